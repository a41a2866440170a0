solver = dict(
    train_per_batch=4,
    val_per_batch=4,
    test_per_batch=3,
    max_iter=1000,
    max_keep=3,
    checkpoint_period=4,
    ema=dict(enabled=True, decay_rate=0.9, num_updates=0),
    generator=dict(
        optimizer=dict(type='SGD', params=dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)),
        lr_scheduler=dict(
            enabled=True,
            type='LRMultiplierScheduler',
            params=dict(
                lr_scheduler_param=dict(name='WarmupCosineLR', gamma=0.1, steps=[600, 800]),
                max_iter=1000,
                warmup_factor=0.01,
                warmup_iter=100,
                warmup_method='linear',
            ),
        ),
        clip_gradients=dict(enabled=True, clip_type='norm', clip_value=5.0),
    ),
)
