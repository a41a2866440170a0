import os

_base_ = ['./_base_/dataset.py', './_base_/schedule.py']

DATA = os.environ.get('SHAPES_DATA', '/data/shapes')
max_iter = 8


def sub(name):
    return os.path.join(DATA, name)


t_transformer = [
    dict(name='RandomFlip', direction=['horizontal'], p=0.5),
    dict(name='Resize', target_size=32, interpolation='INTER_LINEAR', keep_ratio=False, clip_border=True),
]

dataloader = dict(
    train_data_set=dict(data_root=sub('train'), transformer=t_transformer),
    test_data_set=dict(name='ShapesSegDataSet', data_root=sub('test'), num=9, img_size=32, transformer=[]),
)

trainer = dict(
    name='SegTrainer',
    device='cpu',
    weights='',
    vis_dir='test_vis',
    model=dict(
        name='SegModel',
        generator=dict(name='TinySegNet', in_channels=3, num_classes=2, width=8),
        loss=dict(
            ce=[dict(name='CrossEntropyLoss', param=dict(ignore_index=255, lambda_weight=1.0))],
            dice=[dict(name='BinaryDiceLoss', param=dict(apply_sigmoid=True, ignore_index=255, lambda_weight=0.5))],
        ),
    ),
)

solver = dict(
    max_iter=max_iter,
    generator=dict(optimizer=dict(type='AdamW', params=dict(lr=0.01, weight_decay=0.01))),
)

output_dir = '/tmp/seed_project'
output_log_name = 'seg_project'
