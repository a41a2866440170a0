_base_ = "../toy/cfg.py"
dataloader = dict(train_data_set=dict(name="FaultyRegression"))
trainer = dict(model=dict(name="FaultyModel"))
solver = dict(max_iter=400)
