# A deep MLP regression for the large-model tests: ZeRO-3 construction, offload, precision,
# activation checkpointing and pipeline parallel are switched by the deepspeed section only.
output_dir = "./output/large"
seed = 3
dataloader = dict(num_workers=0, train_data_set=dict(name="LargeRegression"))
trainer = dict(name="LargeTrainer", log_period=5, tensorboard=False,
               model=dict(name="LargeModel", generator=dict(name="DeepMLP", dim=8, hidden=32, depth=4)))
solver = dict(
    train_per_batch=8, max_iter=12,
    generator=dict(optimizer=dict(type="SGD", params=dict(lr=0.05))),
)
deepspeed = dict(config="zero3")
