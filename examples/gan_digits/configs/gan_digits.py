# A conditional GAN on the 8x8 digits (upscaled to 16x16), EMA of the generator on.
output_dir = "./output/gan_digits"
output_log_name = "gan_digits"
seed = 11

dataloader = dict(
    num_workers=0,
    train_data_set=dict(name="DigitsDataset", split="train", size=16, transformer=[]),
)

trainer = dict(
    name="GanDigitsTrainer",
    log_period=50,
    model=dict(
        name="DigitsGan",
        generator=dict(name="DigitsGenerator", z_dim=32, width=32),
        discriminator=dict(name="DigitsDiscriminator", width=32),
        ema=dict(enable=True, decay_rate=0.99, num_updates=0),
    ),
)

solver = dict(
    train_per_batch=32,
    max_iter=300,
    checkpoint_period=0,
    generator=dict(optimizer=dict(type="Adam", params=dict(lr=2e-3, betas=(0.5, 0.99)))),
    discriminator=dict(optimizer=dict(type="Adam", params=dict(lr=2e-3, betas=(0.5, 0.99)))),
)

deepspeed = dict(config="zero1")
