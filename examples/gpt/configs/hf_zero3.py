# The same run with a Hugging Face GPT-2 (built from a config, no download) as the network, under ZeRO-3.
_base_ = "zero2.py"
trainer = dict(model=dict(generator=dict(_delete_=True, name="HFCausalLM", vocab_size=256, n_positions=64,
                                         n_embd=128, n_layer=4, n_head=4)))
# built inside deepspeed.zero.Init (zero_init, the stage-3 default): no rank ever holds the whole model
deepspeed = dict(config="zero3")
