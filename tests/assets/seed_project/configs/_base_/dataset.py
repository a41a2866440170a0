img_size = 32

dataloader = dict(
    num_workers=0,
    train_data_set=dict(
        name='ShapesSegDataSet',
        data_root='/data/shapes/train',
        num=32,
        img_size=img_size,
        transformer=[
            dict(name='RandomFlip', direction=['horizontal', 'vertical'], p=0.5),
            dict(name='Resize', target_size=img_size, interpolation='INTER_LINEAR', keep_ratio=False, clip_border=True),
        ],
    ),
    val_data_set=dict(name='ShapesSegDataSet', data_root='/data/shapes/val', num=8, img_size=img_size, transformer=[]),
)
