import numpy as np
import torch

from engine.data import BUILD_DATASET_REGISTRY, EngineDataSet
import engine.transforms.functional as F

__all__ = ['ShapesSegDataSet']

IGNORE = 255


@BUILD_DATASET_REGISTRY.register()
class ShapesSegDataSet(EngineDataSet):
    """Squares on noise; the mask is 1 inside the square, 0 outside and 255 on a 1-pixel ring around it."""

    def __init__(self, data_root, num=32, img_size=32, transformer=None):
        super(ShapesSegDataSet, self).__init__(transformer)
        self.data_root = data_root  # the seed's projects read a folder; this one draws its images
        self.num = num
        self.img_size = img_size

    def _sample(self, index):
        g = np.random.RandomState(1000 + index)
        size = self.img_size
        img = (g.rand(size, size, 3) * 60).astype(np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        side = g.randint(size // 4, size // 2)
        y, x = g.randint(1, size - side - 1, size=2)
        mask[y - 1:y + side + 1, x - 1:x + side + 1] = IGNORE
        mask[y:y + side, x:x + side] = 1
        img[y:y + side, x:x + side] = 200
        return img, mask

    def __getitem__(self, index):
        img, mask = self._sample(index)
        results = dict()
        results['img'] = img
        results['mask'] = mask
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results['img_fields'] = ['img', 'mask']
        results['color_fields'] = ['img']
        results['interpolation'] = dict(mask='INTER_NEAREST')
        results = self.data_pipeline(results)
        return dict(img=F.to_tensor(results['img']), mask=torch.from_numpy(np.ascontiguousarray(results['mask'])).long())

    def __len__(self):
        return self.num
