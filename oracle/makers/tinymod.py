import torch


class T(torch.nn.Module):
    def forward(self, x):
        return x
