_base_ = "zero2.py"
# ZeRO-3 with optimizer state and parameters on the CPU (NVMe: offload_param=dict(device="nvme", nvme_path=...))
deepspeed = dict(config="zero3_offload")
