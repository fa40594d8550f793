"""Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine they lose a lot."""

import torch

torch.set_num_threads(1)
