z_dim = 4

dataloader = dict(num_workers=0, train_data_set=dict(name='RingPoints', num=64), val_data_set=dict(name='RingPoints', num=16))
trainer = dict(
    name='GanTrainer',
    model=dict(
        name='PointGan',
        g_step=2,
        generator=dict(name='PointGenerator', z_dim=z_dim),
        discriminator=dict(name='PointCritic', hidden=16),
    ),
)
solver = dict(
    train_per_batch=8,
    max_iter=6,
    generator=dict(optimizer=dict(type='Adam', params=dict(lr=1e-3))),
    discriminator=dict(optimizer=dict(type='Adam', params=dict(lr=1e-3)),
                       lr_scheduler=dict(enabled=False, type='', params=dict()),
                       clip_gradients=dict(enabled=False, clip_type='norm', clip_value=1.0)),
)
output_dir = '/tmp/seed_gan'
output_log_name = 'gan_project'
