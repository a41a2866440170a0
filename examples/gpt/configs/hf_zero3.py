# The same run with a Hugging Face GPT-2 (built from a config, no download) as the network, under ZeRO-3.
_base_ = "zero2.py"
trainer = dict(model=dict(generator=dict(_delete_=True, name="HFCausalLM", vocab_size=256, n_positions=64,
                                         n_embd=128, n_layer=4, n_head=4)))
# zero_init off: building a transformers 5.x model inside deepspeed.zero.Init (DeepSpeed 0.19.8) fails with
# "TypeError: Signature mismatch ... tensor_pynew"; the model is small, so it is built whole, then partitioned
deepspeed = dict(config="zero3", zero_init=False)
