"""Reference: a plain PyTorch eager DLB training step of the same ResNet-20.

The yardstick of the GPU suite's "epsd_tf DLB images/s / PyTorch eager DLB
images/s" (issue 11; target >= 1.5). Written to match epsd_tf's network and
step, not to be fast:

* ResNet-20 as `epsd_tf.models.resnet20`: 3x3 16-channel stem, 3 stages of 3
  basic blocks (16, 32, 64 channels, stride 2 at stages 2 and 3), **option-B
  shortcuts** (1x1 conv + BN projection where the shape changes), bias-free
  convs, BN momentum 0.1 / eps 1e-5 (PyTorch's, which epsd_tf's blocks copy),
  global average pooling, one Linear layer.
* DLB as the official code (Shen et al., CVPR 2022; `dlb.py`, and
  `epsd_tf.distill.methods.DLB`): two forward passes per step (view 0 of the
  new batch, then view 1 of the previous batch, each with its own BatchNorm
  statistics), `loss = CE(cat logits, cat labels) + T²·KL(z_prev/T ‖ f/T)`
  (batchmean), T = 3, alpha = 1; SGD momentum 0.9, lr 0.1, weight decay 5e-4.
* Eager PyTorch, float32 (cuDNN's default TF32 convolutions),
  `cudnn.benchmark = True`, NCHW, batches already on the GPU.

Use `make_trainer(...)` from the GPU suite (timed side by side in one process)
or run it alone: `python tools/benchmarks/torch_dlb.py --batch_size=128`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 3.0
ALPHA = 1.0


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != filters:  # option B: 1x1 conv + BN projection
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, filters, 1, stride, bias=False),
                                          nn.BatchNorm2d(filters))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        layers, channels = [], 16
        for stage, filters in enumerate((16, 32, 64)):
            for index in range(3):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(channels, filters, stride))
                channels = filters
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DLBTrainer:
    """One DLB step per `step()`, cycling over batches already on the device."""

    def __init__(self, batch_size: int, image_shape=(28, 28, 1), num_classes: int = 10,
                 num_batches: int = 8, device: str = "cuda", seed: int = 0):
        torch.backends.cudnn.benchmark = True
        generator = torch.Generator(device="cpu").manual_seed(seed)
        height, width, channels = image_shape
        self.device = device
        self.model = ResNet20(channels, num_classes).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9,
                                         weight_decay=5e-4)
        shape = (num_batches, batch_size, channels, height, width)
        self.views0 = torch.randn(shape, generator=generator).to(device)
        self.views1 = torch.randn(shape, generator=generator).to(device)
        self.labels = torch.randint(0, num_classes, (num_batches, batch_size),
                                    generator=generator).to(device)
        self.batch_size = batch_size
        self.index = 0
        self.previous = None  # (view 1, labels, detached view-0 logits) of the last batch

    def step(self) -> None:
        i = self.index % len(self.labels)
        self.index += 1
        x0, x1, y = self.views0[i], self.views1[i], self.labels[i]
        self.model.train()
        logits = self.model(x0)
        if self.previous is None:
            loss = F.cross_entropy(logits, y)
        else:
            previous_x1, previous_y, previous_logits = self.previous
            student = self.model(previous_x1)  # second forward: own BN statistics
            loss = F.cross_entropy(torch.cat([logits, student]), torch.cat([y, previous_y]))
            loss = loss + ALPHA * TEMPERATURE ** 2 * F.kl_div(
                F.log_softmax(student / TEMPERATURE, dim=1),
                F.softmax(previous_logits / TEMPERATURE, dim=1), reduction="batchmean")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.previous = (x1, y, logits.detach())

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps, synchronised at both ends."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start


def make_trainer(batch_size: int, image_shape=(28, 28, 1), num_classes: int = 10,
                 device: str | None = None) -> DLBTrainer:
    """A warmed-up trainer (two steps run: cuDNN autotuning, the carry filled)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    trainer = DLBTrainer(batch_size, image_shape, num_classes, device=device)
    trainer.run(3)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trainer = make_trainer(args.batch_size)
    seconds = sorted(trainer.run(args.steps) for _ in range(args.rounds))
    median = seconds[len(seconds) // 2]
    sys.stdout.write(json.dumps({"device": trainer.device, "batch_size": args.batch_size,
                                 "images_per_second": args.batch_size * args.steps / median,
                                 "step_seconds": median / args.steps}) + "\n")


if __name__ == "__main__":
    main()
