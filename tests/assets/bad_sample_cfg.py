# tests/assets/bad_sample.py's project: the toy regression with a poisoned sample (set its indices with --opts)
_base_ = "toy/cfg.py"
dataloader = dict(train_data_set=dict(name="BadSampleDataset"))
trainer = dict(name="BadSampleTrainer", model=dict(name="BadSampleModel"))
solver = dict(train_per_batch=8, gradient_accumulation_batch=2, max_iter=16, nan_policy="skip")
