# Tiny GPT on the standard library's source; the other configs change only the deepspeed section.
output_dir = "./output/gpt"
seed = 1
dataloader = dict(num_workers=0,
                  train_data_set=dict(name="StdlibText", split="train"),
                  val_data_set=dict(name="StdlibText", split="val", limit=60_000))
trainer = dict(name="GPTTrainer", log_period=20,
               model=dict(name="GPTModel", generator=dict(name="TinyGPT", width=128, depth=4, heads=4, block=64)))
solver = dict(
    train_per_batch=16, val_per_batch=16, max_iter=600, eval_period=200,
    generator=dict(optimizer=dict(type="AdamW", params=dict(lr=3e-3, weight_decay=0.01)),
                   clip_gradients=dict(enabled=True, clip_value=1.0)),
)
deepspeed = dict(config="zero2")
