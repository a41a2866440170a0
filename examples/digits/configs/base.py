# Shared settings of the digits example; digits.py and digits.yaml build on it.
output_dir = "./output/digits"
output_log_name = "digits"
seed = 7

dataloader = dict(
    num_workers=0,
    train_data_set=dict(name="DigitsDataset", split="train", size=16, transformer=[]),
    val_data_set=dict(name="DigitsDataset", split="val", size=16, transformer=[]),
)

trainer = dict(
    name="DigitsTrainer",
    log_period=50,
    model=dict(
        name="DigitsModel",
        generator=dict(name="DigitsNet", width=32, num_classes=10),
        loss=dict(cls=[dict(name="CrossEntropyLoss", param=dict(lambda_weight=1.0))]),
    ),
)

solver = dict(
    train_per_batch=32,
    val_per_batch=128,
    max_iter=600,
    eval_period=200,
    generator=dict(
        optimizer=dict(type="AdamW", params=dict(lr=3e-3, weight_decay=1e-4)),
        lr_scheduler=dict(
            enabled=True,
            type="LRMultiplierScheduler",
            params=dict(
                lr_scheduler_param=dict(name="WarmupCosineLR"),
                max_iter=600,
                warmup_factor=0.1,
                warmup_iter=50,
                warmup_method="linear",
            ),
        ),
        clip_gradients=dict(enabled=True, clip_type="norm", clip_value=5.0),
    ),
)

deepspeed = dict(config="zero1")
