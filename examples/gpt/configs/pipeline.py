_base_ = "zero2.py"
# 2 pipeline stages (world size 2 = 1 replica); each step's 2 micro-batches run as one pipeline schedule
solver = dict(gradient_accumulation_batch=2)
deepspeed = dict(config="zero1", pipeline=dict(stages=2, partition_method="parameters"))
