"""PyTorch 2.15: torch.jit.save writes a module holding an empty quantized tensor, but
torch.jit.load cannot read the archive back ("setStorage: sizes [] ... out of bounds for
storage of size 0"). Writes the archive to ARGV[1], then tries to load it.

    python oracle/findings/empty_quantized_tensor.py OUT.pt
"""
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.quantize_per_tensor(torch.zeros(0), 0.5, 0, torch.qint8)

    def forward(self, x):
        return x


torch.jit.save(torch.jit.script(M()), sys.argv[1])
torch.jit.load(sys.argv[1])
print("loaded")
