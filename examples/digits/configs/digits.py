# The digits example: the base settings plus light augmentation.
_base_ = "base.py"

dataloader = dict(
    train_data_set=dict(
        transformer=[
            dict(name="RandomAffine", rotate_degree_range=8, max_translate_ratio=0.06,
                 scaling_ratio_range=(0.9, 1.1), max_shear_degree=4, border_val=0, p=0.7),
        ],
    ),
)
