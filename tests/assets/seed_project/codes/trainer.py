import json
import logging
import os

import cv2
import numpy as np
import torch
from torch.utils.data.dataloader import default_collate

import engine.comm as comm
from engine.trainer import BaseTrainer, BUILD_TRAINER_REGISTRY

__all__ = ['SegTrainer']

IGNORE = 255


def train_collate(batch):
    out = default_collate(batch)
    out['collate'] = 'train_collate'
    return out


def valid_collate(batch):
    out = default_collate(batch)
    out['collate'] = 'valid_collate'
    return out


@BUILD_TRAINER_REGISTRY.register()
class SegTrainer(BaseTrainer):
    def __init__(self, cfg):
        super(SegTrainer, self).__init__(cfg)
        self.vis_dir = os.path.join(self.output, cfg.TRAINER.VIS_DIR)  # a key of the project's own
        self.iterated = []
        logging.getLogger(self.default_log_name).info(
            'seg trainer: device {} batch {} accumulation {} epoch mode {} checkpoint period {} keep {} in {}'.format(
                self.device, self.train_batch_size, self.gradient_accumulation_batch, self.enable_epoch_method,
                self.checkpoint.check_period, self.checkpoint.max_keep, self.checkpoint.save_dir))

    def set_collate_fn(self, cfg):
        self.collate_train_fn = train_collate
        self.collate_valid_fn = valid_collate

    def before_loop(self):
        logging.getLogger(self.default_log_name).info('start at {} of {}'.format(self.start_iter, self.max_iter))

    def iterate_after(self, epoch):
        self.iterated.append(int(epoch))
        if epoch % 2 == 0:
            logging.getLogger(self.cfg.OUTPUT_LOG_NAME).info('iterate_after {}'.format(epoch))

    def after_loop(self):
        """The seed's final test pass: inference through model(batch) after disable_train."""
        self.model.disable_train()
        correct, counted, collates, first_logits = 0, 0, set(), None
        os.makedirs(self.vis_dir, exist_ok=True)
        with torch.no_grad():
            for i, batch in enumerate(self.test_data_loader):
                collates.add(batch['collate'])
                logits = self.model(batch['img'])
                first_logits = logits.tolist() if first_logits is None else first_logits
                pred = logits.argmax(dim=1).cpu()
                valid = batch['mask'] != IGNORE
                correct += int((pred[valid] == batch['mask'][valid]).sum())
                counted += int(valid.sum())
                if comm.is_main_process():
                    cv2.imwrite(os.path.join(self.vis_dir, 'test_{:03d}.png'.format(i)),
                                (pred[0].numpy() * 255).astype(np.uint8))
        self.model.enable_train()
        accuracy = correct / max(counted, 1)
        logging.getLogger(self.default_log_name).info('test pixel accuracy {:.4f}'.format(accuracy))
        state = self.model.get_state_dict()
        if comm.is_main_process():
            torch.save(state, os.path.join(self.output, 'final_model.pth'))
        record = dict(iterated=self.iterated, accuracy=accuracy, test_collates=sorted(collates),
                      train_collates=sorted(self.model.collates_seen), start_iter=self.start_iter,
                      max_iter=self.max_iter, model_path=self.model_path, test_batches=len(self.test_data_loader),
                      val_batches=len(self.val_data_loader), first_test_logits=first_logits,
                      weights={k: v.tolist() for k, v in state['g_model'].items()})
        with open(os.path.join(self.output, 'record_rank{}.json'.format(comm.get_rank())), 'w') as f:
            json.dump(record, f)
