"""Writes corpus/linear.pt with its forward returning a TERMS-term `_0 + _0 + ...` chain.

    python oracle/findings/make_operator_chain.py TERMS OUT.pt

No brackets: the expression is a left-deep tree of TERMS - 1 additions, which PyTorch's
recursive parser (and the passes after it) walk recursively. PyTorch 2.15 loads 8,000
terms and crashes with SIGSEGV at 12,000 (`corpus/torch-crashes/code_operator_chain.pt`).
The code's .debug_pkl is dropped, as its source ranges no longer match the text.
Standard library only: run it with any Python.
"""
import sys
import zipfile

terms, out = int(sys.argv[1]), sys.argv[2]
src = zipfile.ZipFile("corpus/linear.pt")
code = "archive/code/__torch__/torch/nn/modules/linear.py"
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        data = src.read(info)
        if info.filename == code + ".debug_pkl":
            continue
        if info.filename == code:
            text = data.decode()
            old = "    return torch.linear(input, weight, bias)\n"
            assert old in text
            chain = " + ".join(["_0"] * terms)
            new = "    _0 = torch.linear(input, weight, bias)\n    return " + chain + "\n"
            data = text.replace(old, new).encode()
        dst.writestr(info.filename, data)
