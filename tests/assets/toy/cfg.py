output_dir = "./output/toy"
seed = 3
dataloader = dict(num_workers=0, train_data_set=dict(name="ToyRegression"))
trainer = dict(name="ToyTrainer", log_period=5,
               model=dict(name="ToyModel", generator=dict(name="ToyMLP", dim=8, hidden=16)))
solver = dict(
    train_per_batch=8, max_iter=40,
    generator=dict(optimizer=dict(type="AdamW", params=dict(lr=3e-2))),
)
deepspeed = dict(config="zero2")
