import json
import logging
import os

import torch

import engine.comm as comm
from engine.data import BUILD_DATASET_REGISTRY, EngineDataSet
from engine.model import BaseGanModel, BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.trainer import BaseTrainer, BUILD_TRAINER_REGISTRY

__all__ = ['RingPoints', 'PointGenerator', 'PointCritic', 'PointGan', 'GanTrainer']


@BUILD_DATASET_REGISTRY.register()
class RingPoints(EngineDataSet):
    def __init__(self, num=64, transformer=None):
        super(RingPoints, self).__init__(transformer)
        angle = torch.linspace(0, 6.283, num)
        self.points = torch.stack([angle.cos(), angle.sin()], dim=1)

    def __getitem__(self, index):
        return dict(x=self.points[index])

    def __len__(self):
        return len(self.points)


@BUILD_NETWORK_REGISTRY.register()
class PointGenerator(torch.nn.Module):
    def __init__(self, z_dim=4):
        super(PointGenerator, self).__init__()
        self.z_dim = z_dim
        self.net = torch.nn.Sequential(torch.nn.Linear(z_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, z):
        return self.net(z)


@BUILD_NETWORK_REGISTRY.register()
class PointCritic(torch.nn.Module):
    def __init__(self, hidden=16):
        super(PointCritic, self).__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


@BUILD_MODEL_REGISTRY.register()
class PointGan(BaseGanModel):
    """The seed's GAN form: dmodel_step / gmodel_step; the framework steps D, then G every g_step."""

    def __init__(self, cfg):
        super(PointGan, self).__init__(cfg)
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.g_calls = []

    def _noise(self, n):
        return torch.randn(n, 4, device=self.device)

    def dmodel_step(self, data, epoch=None, **kwargs):
        real = data['x'].to(self.device)
        with torch.no_grad():
            fake = self.g_model(self._noise(real.shape[0]))
        scores = self.dmodel_forward(dict(x=torch.cat([real, fake])))
        target = torch.cat([torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)]).to(self.device)
        return self.bce(scores['default'], target)

    def gmodel_step(self, data, epoch=None, **kwargs):
        if self.g_model.training:
            self.g_calls.append(int(epoch))
        fake = self.g_model(self._noise(data['x'].shape[0]))
        scores = self.dmodel_forward(dict(default=dict(x=fake)))
        return self.bce(scores['default'], torch.ones_like(scores['default']))

    def generator(self, data):
        return self.g_model(data.to(self.device))


@BUILD_TRAINER_REGISTRY.register()
class GanTrainer(BaseTrainer):
    def after_loop(self):
        self.model.disable_train()
        with torch.no_grad():
            samples = self.model(torch.zeros(3, 4))
        self.model.enable_train()
        addition = self.model.get_addition_state_dict()
        logging.getLogger(self.default_log_name).info('gan samples {}'.format(tuple(samples.shape)))
        with open(os.path.join(self.output, 'gan_rank{}.json'.format(comm.get_rank())), 'w') as f:
            json.dump(dict(g_calls=self.model.g_calls, g_steps=int(self.model.g_model.global_steps),
                           d_steps=int(self.model.d_model['default'].global_steps),
                           d_schedulers=sorted(self.model.d_scheduler), addition=sorted(addition),
                           samples=list(samples.shape)), f)
