_base_ = "zero2.py"
# tensor parallel over 2 ranks: q/k/v/up split by columns, proj/down by rows (TinyGPT.autotp_layer_specs)
deepspeed = dict(config="zero1", tensor_parallel=dict(autotp_size=2))
