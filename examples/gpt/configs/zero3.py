_base_ = "zero2.py"
# parameters, gradients and optimizer state sharded; the network is built under zero.Init
deepspeed = dict(config="zero3")
