from engine.model import BaseModel, BUILD_MODEL_REGISTRY, build_network
from engine.loss import LossKeyCompose

__all__ = ['SegModel']


@BUILD_MODEL_REGISTRY.register()
class SegModel(BaseModel):
    def __init__(self, cfg):
        super(SegModel, self).__init__(cfg)
        self.loss = LossKeyCompose(cfg.TRAINER.MODEL.LOSS)
        self.collates_seen = set()

    def create_model(self, params):
        return build_network(params)

    def run_step(self, data, *, epoch=None, **kwargs):
        if self.g_model.training:
            self.collates_seen.add(data['collate'])
        img = data['img'].to(self.device, non_blocking=True)
        mask = data['mask'].to(self.device, non_blocking=True)
        logits = self.g_model(img)
        foreground = logits[:, 1] - logits[:, 0]
        loss = self.loss(dict(ce=[(logits, mask)], dice=[(foreground, mask.float())]))
        return dict(loss=loss)

    def generator(self, data):
        return self.g_model(data.to(self.device, non_blocking=True))
