#!/usr/bin/env python3
"""The real-model corpus: real architectures (torchvision, timm, torchaudio, torch.nn,
quantized), random weights, every serialized form PyTorch 2.15.0 can write.

    PY=$(bash oracle/setup.sh --models)       # torch 2.15.0 + torchvision/torchaudio/timm pins
    $PY oracle/makers/make_models.py          # all models -> ~/.cache/ptconform/models
    $PY oracle/makers/make_models.py --only tv_resnet18 nn_lstm
    $PY oracle/makers/make_models.py --small  # only the models marked small
    $PY oracle/makers/make_models.py --list
    $PY oracle/makers/make_models.py --commit-small  # small models' files (--out) -> corpus/models/
    $PY oracle/check/check_models.py         # run target/release/ptconform over them

Weights are ALWAYS random (weights=None / pretrained=False, torch.manual_seed(0) before
the model is built), every model is in .eval(). TORCH_HOME, HF_HOME and XDG_CACHE_HOME
point at an empty temporary directory and HF_HUB_OFFLINE=1, so a download attempt fails
loudly instead of fetching anything.

For every model a fresh child process (PYTHONHASHSEED=0, cwd = repository root, as
oracle/makers/make_corpus.py) builds it, compiles it with torch.jit.script (falling back to
torch.jit.trace on a small seeded example input when scripting fails; the manifest says
which and why) and writes, in this order (the mobile debug-handle counter is process-wide,
so the order is part of the output):

    NAME.pt            torch.jit.save(sm, path)                                  zip
    NAME.ptl           torch.jit.save_jit_module_to_flatbuffer(sm, path)         flatbuffer
    NAME.lite.ptl      sm._save_for_lite_interpreter(path)                       mobile zip
                       (code/ + bytecode.pkl + constants.pkl)
    NAME.lite_fb.ptl   sm._save_for_lite_interpreter(path, _use_flatbuffer=True) flatbuffer
    NAME.frozen.pt     torch.jit.save(torch.jit.freeze(sm), path)                zip
    NAME.frozen.ptl    torch.jit.save_jit_module_to_flatbuffer(frozen, path)     flatbuffer
    NAME.mobile.ptl    optimize_for_mobile(sm)._save_for_lite_interpreter(path)  mobile zip

A variant PyTorch fails to write is recorded in the manifest (exception type + first line)
and the rest go on. Beside each file its facts (oracle/peer/facts.py, i.e. what torch.jit.load
sees), named like the committed corpus so `ptconform conform --corpus DIR` reads them:
a zip `X.pt` / `X.lite.ptl` -> `X.json` / `X.lite.json` (Path.with_extension("json")), a
flatbuffer `X.ptl` -> `X.ptl.json`. Facts are taken after the model's child has exited, in
another child (make_models.py --facts-worker: one per model, restarted when a load
crashes it) that imports torchvision and torchaudio first, so their custom operators
(torchvision::nms, roi_align, ...) are registered; whether NAME.pt also loads in a process
WITHOUT them is recorded as `loads_without_extensions`. For the mobile files the manifest
also records whether torch._C._load_for_lite_interpreter loads them.

`DIR/manifest.json` (deterministic: no times, no absolute paths): per model the family,
constructor call, how it was compiled, parameter count, each variant's file, format, size,
sha256 or the save error, the facts error if torch.jit.load fails. `DIR/timings.json` has
the wall times of the last run (not deterministic, not committed).

Small models (every written file <= SMALL_FILE bytes) are marked `"small": true`;
`--commit-small` copies exactly those models' files and JSON, plus a manifest.json of them,
to corpus/models/ (refusing when the total exceeds SMALL_TOTAL).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
DEFAULT_OUT = os.path.join(os.path.expanduser("~"), ".cache", "ptconform", "models")
_DIR = os.path.dirname(os.path.abspath(__file__))  # oracle/ in a model's child (recorded.py)
ROOT = os.path.dirname(_DIR if os.path.basename(_DIR) == "oracle" else os.path.dirname(_DIR))
HERE = os.path.join(ROOT, "oracle", "makers")
PEER = os.path.join(ROOT, "oracle", "peer")                   # facts.py
SELF = os.path.join(HERE, "make_models.py")
COMMIT_DIR = os.path.join(ROOT, "corpus", "models")
SMALL_FILE = 1536 * 1024          # every variant of a committed model at most this
SMALL_TOTAL = 40 * 1024 * 1024    # all committed model files together at most this
CHILD_TIMEOUT = 1800

# variant key -> (file suffix, description); the order is the order of writing
VARIANTS = [
    ("pt", ".pt", "torch.jit.save(sm, path)"),
    ("ptl", ".ptl", "torch.jit.save_jit_module_to_flatbuffer(sm, path)"),
    ("lite", ".lite.ptl", "sm._save_for_lite_interpreter(path)"),
    ("lite_fb", ".lite_fb.ptl", "sm._save_for_lite_interpreter(path, _use_flatbuffer=True)"),
    ("frozen", ".frozen.pt", "torch.jit.save(torch.jit.freeze(sm), path)"),
    ("frozen_fb", ".frozen.ptl", "torch.jit.save_jit_module_to_flatbuffer(torch.jit.freeze(sm), path)"),
    ("mobile", ".mobile.ptl",
     "torch.utils.mobile_optimizer.optimize_for_mobile(sm)._save_for_lite_interpreter(path)"),
]


def json_for(path):
    """The facts file beside `path` (the convention of corpus/ and `ptconform conform`):
    zip -> with_extension("json"), flatbuffer -> path + ".json"."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and head[4:8] == b"PTMF":
        return path + ".json"
    return os.path.splitext(path)[0] + ".json"


# ------------------------------------------------------------------------ the models
#
# Each entry: name -> (family, constructor source, example input source, flags).
# The constructor is a Python expression evaluated in the child after the imports below;
# the example input (used only when scripting fails and for nothing else) is an expression
# giving a tuple of arguments. Small configurations where the constructor allows it
# (num_classes=10, weights_backbone=None), real architectures.

IMG = "(torch.randn(1, 3, 64, 64),)"
IMG224 = "(torch.randn(1, 3, 224, 224),)"

# timm: the model's own default input size (m is the model being traced)
TIMM_EXAMPLE = "(torch.randn(1, *m.pretrained_cfg['input_size']),)"

MODELS = {}


def model(name, family, ctor, example=IMG, small=False, trace=False):
    MODELS[name] = {"family": family, "ctor": ctor, "example": example, "small": small,
                    "trace": trace}


# torchvision classification
for _n, _kw in [("resnet18", ""), ("mobilenet_v2", ""), ("mobilenet_v3_small", ""),
                ("efficientnet_b0", ""), ("shufflenet_v2_x0_5", ""), ("squeezenet1_0", ""),
                ("densenet121", ""), ("googlenet", ", aux_logits=False, init_weights=True"),
                ("inception_v3", ", aux_logits=False, init_weights=True"),
                ("regnet_y_400mf", ""), ("convnext_tiny", ""), ("vit_b_16", ""),
                ("swin_t", ""), ("maxvit_t", "")]:
    model("tv_" + _n, "torchvision",
          "torchvision.models.%s(weights=None, num_classes=10%s)" % (_n, _kw),
          example=IMG224 if _n in ("vit_b_16", "maxvit_t") else
          "(torch.randn(1, 3, 96, 96),)" if _n == "inception_v3" else IMG)
model("tv_mnasnet0_5", "torchvision", "torchvision.models.mnasnet0_5(weights=None, num_classes=10)")
model("tv_mobilenet_v3_small_w025", "torchvision",
      "torchvision.models.mobilenet_v3_small(weights=None, num_classes=10, width_mult=0.25)",
      small=True)

# torchvision detection / segmentation / video / optical flow
_DET = "(weights=None, weights_backbone=None, num_classes=%d)"
for _n, _nc in [("fasterrcnn_mobilenet_v3_large_320_fpn", 10), ("maskrcnn_resnet50_fpn", 10),
                ("keypointrcnn_resnet50_fpn", 2), ("retinanet_resnet50_fpn", 10),
                ("ssdlite320_mobilenet_v3_large", 10)]:
    model("tv_" + _n, "torchvision.detection",
          "torchvision.models.detection.%s%s" % (_n, _DET % _nc),
          example="([torch.rand(3, 128, 128)],)")
for _n in ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50"]:
    model("tv_" + _n, "torchvision.segmentation",
          "torchvision.models.segmentation.%s%s" % (_n, _DET % 10))
model("tv_r3d_18", "torchvision.video",
      "torchvision.models.video.r3d_18(weights=None, num_classes=10)",
      example="(torch.randn(1, 3, 4, 32, 32),)")
model("tv_raft_small", "torchvision.optical_flow",
      "torchvision.models.optical_flow.raft_small(weights=None)",
      example="(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))")

# torchvision quantized (quantize=True, weights=None: quantize_model calibrates on a random
# input) and dynamic quantization
for _n, _kw in [("mobilenet_v2", ""), ("resnet18", ""), ("shufflenet_v2_x0_5", "")]:
    model("tvq_" + _n, "torchvision.quantization",
          "torchvision.models.quantization.%s(weights=None, quantize=True, num_classes=10)" % _n,
          small=_n == "shufflenet_v2_x0_5")
model("dq_lstm_linear", "quantize_dynamic",
      "torch.ao.quantization.quantize_dynamic(LstmLinear(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)",
      example="(torch.randn(5, 1, 16),)", small=True)
model("dq_gru", "quantize_dynamic",
      "torch.ao.quantization.quantize_dynamic(GruLinear(), {nn.GRU, nn.Linear}, dtype=torch.qint8)",
      example="(torch.randn(5, 1, 16),)", small=True)
model("dq_linear_fp16", "quantize_dynamic",
      "torch.ao.quantization.quantize_dynamic(Mlp(), {nn.Linear}, dtype=torch.float16)",
      example="(torch.randn(2, 16),)", small=True)

# timm (pretrained=False)
for _n in ["resnet18", "mobilenetv3_small_050", "efficientnet_b0", "vit_tiny_patch16_224",
           "deit_tiny_patch16_224", "convnext_atto", "regnetx_002", "mobilevit_xxs",
           "ghostnet_050", "levit_128s", "mixer_s32_224", "lcnet_050", "tinynet_e",
           "edgenext_xx_small", "mobileone_s0"]:
    model("timm_" + _n, "timm",
          "timm.create_model(%r, pretrained=False, num_classes=10)" % _n,
          example=TIMM_EXAMPLE,
          small=_n in ("lcnet_050", "tinynet_e"))

# timm's own tiny test models (registered architectures, a few hundred thousand
# parameters: these are the committed ones)
for _n in ["test_efficientnet", "test_byobnet", "test_nfnet", "test_vit", "test_convnext",
           "test_mambaout"]:
    model("timm_" + _n, "timm", "timm.create_model(%r, pretrained=False, num_classes=10)" % _n,
          example=TIMM_EXAMPLE, small=True)

# torchaudio
model("ta_wav2vec2_base", "torchaudio", "torchaudio.models.wav2vec2_base()",
      example="(torch.randn(1, 4000),)")
model("ta_hubert_base", "torchaudio", "torchaudio.models.hubert_base()",
      example="(torch.randn(1, 4000),)")
model("ta_conformer", "torchaudio",
      "torchaudio.models.Conformer(input_dim=80, num_heads=4, ffn_dim=128, num_layers=4, "
      "depthwise_conv_kernel_size=31)",
      example="(torch.randn(1, 20, 80), torch.tensor([20]))", small=True)
model("ta_emformer_rnnt_base", "torchaudio",
      "torchaudio.models.emformer_rnnt_base(num_symbols=128)",
      example="(torch.randn(1, 20, 80), torch.tensor([20]), torch.zeros(1, 5, dtype=torch.int32), "
              "torch.tensor([5], dtype=torch.int32))")
model("ta_tacotron2", "torchaudio", "torchaudio.models.Tacotron2(n_symbol=40)",
      example="(torch.randint(0, 40, (1, 10)), torch.tensor([10]), torch.randn(1, 80, 20), "
              "torch.tensor([20]))")
model("ta_wavernn", "torchaudio",
      "torchaudio.models.WaveRNN(upsample_scales=[5, 5, 8], n_classes=256, hop_length=200)",
      example="(torch.randn(1, 1, 2000), torch.randn(1, 1, 128, 14))")
model("ta_conv_tasnet_base", "torchaudio", "torchaudio.models.conv_tasnet_base(num_sources=2)",
      example="(torch.randn(1, 1, 800),)")
model("ta_deepspeech", "torchaudio", "torchaudio.models.DeepSpeech(n_feature=40, n_class=29)",
      example="(torch.randn(1, 1, 20, 40),)")
model("ta_wav2letter", "torchaudio", "torchaudio.models.Wav2Letter(num_classes=29, input_type='mfcc', num_features=13)",
      example="(torch.randn(1, 13, 100),)")

# torchaudio, small configurations of the same architectures (committed)
model("ta_wav2vec2_tiny", "torchaudio",
      "torchaudio.models.wav2vec2_model(extractor_mode='group_norm', "
      "extractor_conv_layer_config=[(32, 10, 5), (32, 3, 2), (32, 2, 2)], "
      "extractor_conv_bias=False, encoder_embed_dim=32, encoder_projection_dropout=0.1, "
      "encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2, "
      "encoder_num_heads=4, encoder_attention_dropout=0.1, encoder_ff_interm_features=64, "
      "encoder_ff_interm_dropout=0.0, encoder_dropout=0.1, encoder_layer_norm_first=False, "
      "encoder_layer_drop=0.0, aux_num_out=29)",
      example="(torch.randn(1, 4000),)", small=True)
model("ta_emformer_small", "torchaudio",
      "torchaudio.models.Emformer(input_dim=32, num_heads=4, ffn_dim=64, num_layers=2, "
      "segment_length=4, right_context_length=1)",
      example="(torch.randn(1, 9, 32), torch.tensor([9]))", small=True)
model("ta_conv_tasnet_small", "torchaudio",
      "torchaudio.models.ConvTasNet(num_sources=2, enc_kernel_size=16, enc_num_feats=64, "
      "msk_kernel_size=3, msk_num_feats=32, msk_num_hidden_feats=64, msk_num_layers=4, "
      "msk_num_stacks=2)",
      example="(torch.randn(1, 1, 800),)", small=True)
model("ta_deepspeech_small", "torchaudio",
      "torchaudio.models.DeepSpeech(n_feature=40, n_hidden=64, n_class=29)",
      example="(torch.randn(1, 1, 20, 40),)", small=True)
model("ta_wavernn_small", "torchaudio",
      "torchaudio.models.WaveRNN(upsample_scales=[5, 5, 8], n_classes=256, hop_length=200, "
      "n_res_block=2, n_rnn=64, n_fc=64, kernel_size=5, n_freq=32, n_hidden=32, n_output=32)",
      example="(torch.randn(1, 1, 2000), torch.randn(1, 1, 32, 14))", small=True)
model("ta_tacotron2_small", "torchaudio",
      "torchaudio.models.Tacotron2(n_symbol=40, n_mels=32, symbol_embedding_dim=64, "
      "encoder_embedding_dim=64, encoder_n_convolution=2, decoder_rnn_dim=64, "
      "attention_rnn_dim=64, attention_hidden_dim=32, attention_location_n_filter=8, "
      "prenet_dim=32, postnet_n_convolution=2, postnet_embedding_dim=32)",
      example="(torch.randint(0, 40, (1, 10)), torch.tensor([10]), torch.randn(1, 32, 20), "
              "torch.tensor([20]))", small=True)
model("ta_conformer_small", "torchaudio",
      "torchaudio.models.Conformer(input_dim=32, num_heads=4, ffn_dim=64, num_layers=2, "
      "depthwise_conv_kernel_size=7)",
      example="(torch.randn(1, 20, 32), torch.tensor([20]))", small=True)

# torch.nn
model("nn_transformer", "torch.nn",
      "nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, "
      "dim_feedforward=64)",
      example="(torch.randn(5, 1, 32), torch.randn(4, 1, 32))", small=True)
model("nn_transformer_encoder", "torch.nn",
      "nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=32, nhead=4, "
      "dim_feedforward=64), num_layers=2, enable_nested_tensor=False)",
      example="(torch.randn(5, 1, 32),)", small=True)
model("nn_lstm", "torch.nn", "nn.LSTM(16, 32, num_layers=2)",
      example="(torch.randn(5, 1, 16),)", small=True)
model("nn_gru", "torch.nn", "nn.GRU(16, 32, num_layers=2, bidirectional=True)",
      example="(torch.randn(5, 1, 16),)", small=True)
model("nn_multihead_attention", "torch.nn", "nn.MultiheadAttention(32, 4)",
      example="(torch.randn(5, 1, 32), torch.randn(5, 1, 32), torch.randn(5, 1, 32))",
      small=True)


# helper modules of the quantize_dynamic entries: defined here (module __main__ of the
# child, run under its recorded name ROOT/oracle/make_models.py) so scripting finds their
# source and names them __torch__.LstmLinear etc.
try:
    import torch as _torch
    _nn = _torch.nn
except ImportError:  # --list / --commit-small may run without torch
    _torch = None

if _torch is not None:
    class LstmLinear(_nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = _nn.LSTM(16, 32, num_layers=2)
            self.fc = _nn.Linear(32, 10)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y)

    class GruLinear(_nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = _nn.GRU(16, 32)
            self.fc = _nn.Linear(32, 10)

        def forward(self, x):
            y, _ = self.gru(x)
            return self.fc(y)

    class Mlp(_nn.Module):
        def __init__(self):
            super().__init__()
            self.a = _nn.Linear(16, 32)
            self.b = _nn.Linear(32, 10)

        def forward(self, x):
            return self.b(_torch.relu(self.a(x)))


def _first_line(e):
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    return "%s: %s" % (type(e).__name__, lines[0] if lines else "")


def _sanitize_env(env, tmp):
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TORCH_HOME"] = os.path.join(tmp, "torch_home")
    env["HF_HOME"] = os.path.join(tmp, "hf_home")
    env["XDG_CACHE_HOME"] = os.path.join(tmp, "xdg_cache")
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


# ------------------------------------------------------------------------ model child

def run_child(name, outdir):
    """Build, compile and save one model; print one JSON line (the manifest entry)."""
    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    os.chdir(ROOT)
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)
    ns = {"torch": torch, "nn": nn}
    spec = MODELS[name]
    fam = spec["family"]
    if fam.startswith("torchvision"):
        import torchvision
        import torchvision.models.detection
        import torchvision.models.quantization
        import torchvision.models.segmentation
        import torchvision.models.video
        import torchvision.models.optical_flow
        ns["torchvision"] = torchvision
    if fam == "timm":
        import timm
        ns["timm"] = timm
    if fam == "torchaudio":
        import torchaudio
        import torchaudio.models
        ns["torchaudio"] = torchaudio
    ns.update(LstmLinear=LstmLinear, GruLinear=GruLinear, Mlp=Mlp)

    entry = {"family": fam, "constructor": spec["ctor"]}
    torch.manual_seed(0)
    m = eval(spec["ctor"], ns)
    m.eval()
    entry["parameters"] = int(sum(p.numel() for p in m.parameters()))
    entry["parameter_bytes"] = int(sum(p.numel() * p.element_size() for p in m.parameters()))

    sm = None
    if not spec["trace"]:
        try:
            sm = torch.jit.script(m)
            entry["compiled"] = "script"
        except Exception as e:
            entry["script_error"] = _first_line(e)
    if sm is None:
        torch.manual_seed(0)
        ns["m"] = m
        example = eval(spec["example"], ns)
        entry["trace_example"] = spec["example"]
        try:
            with torch.no_grad():
                sm = torch.jit.trace(m, example, check_trace=False)
            entry["compiled"] = "trace"
        except Exception as e:
            entry["compiled"] = None
            entry["trace_error"] = _first_line(e)
            print(json.dumps(entry))
            return 0
    sm.eval()

    variants = {}
    entry["variants"] = variants

    def write(key, fn):
        suffix = dict((k, s) for k, s, _ in VARIANTS)[key]
        # written straight to its final name: PyTorch derives the zip's archive prefix
        # from the file name (tv_resnet18.pt -> "tv_resnet18/", x.lite.ptl -> "x.lite/")
        path = os.path.join(outdir, name + suffix)
        if os.path.exists(path):
            os.remove(path)
        t0 = time.time()
        try:
            fn(path)
        except Exception as e:
            if os.path.exists(path):
                os.remove(path)
            variants[key] = {"file": name + suffix, "error": _first_line(e)}
            return False
        with open(path, "rb") as f:
            data = f.read()
        variants[key] = {
            "file": name + suffix,
            "format": "flatbuffer" if data[4:8] == b"PTMF" else "zip",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "seconds": round(time.time() - t0, 2),
        }
        return True

    write("pt", lambda p: torch.jit.save(sm, p))
    write("ptl", lambda p: torch.jit.save_jit_module_to_flatbuffer(sm, p))
    write("lite", lambda p: sm._save_for_lite_interpreter(p))
    write("lite_fb", lambda p: sm._save_for_lite_interpreter(p, _use_flatbuffer=True))
    frozen = []

    def save_frozen(p):
        fm = torch.jit.freeze(sm)
        frozen.append(fm)
        torch.jit.save(fm, p)

    write("frozen", save_frozen)
    if frozen:
        write("frozen_fb", lambda p: torch.jit.save_jit_module_to_flatbuffer(frozen[0], p))
    else:
        variants["frozen_fb"] = {"file": name + ".frozen.ptl",
                                 "error": "not attempted: torch.jit.freeze failed"}

    def save_mobile(p):
        from torch.utils.mobile_optimizer import optimize_for_mobile
        om = optimize_for_mobile(sm)
        om._save_for_lite_interpreter(p)

    write("mobile", save_mobile)
    print(json.dumps(entry))
    return 0


# ------------------------------------------------------------------------ facts worker

def run_facts_worker():
    """JSON lines on stdin: {"path", "ext": bool, "lite": bool}; answers
    {"ok": true, "facts": {...}, "lite"?: ...} or {"ok": false, "error": ...}."""
    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    sys.path.insert(0, PEER)
    import torch
    import facts as factsmod
    torch.set_num_threads(1)
    ext_loaded = False
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("ext") and not ext_loaded:
            import torchvision  # noqa: F401  (registers torchvision:: operators)
            import torchaudio   # noqa: F401  (registers torchaudio:: operators)
            ext_loaded = True
        res = {}
        try:
            res = {"ok": True, "facts": factsmod.facts(req["path"])}
        except Exception as e:
            res = {"ok": False, "error": _first_line(e)}
        if req.get("lite"):
            try:
                torch._C._load_for_lite_interpreter(req["path"], None)
                res["lite_interpreter_loads"] = True
            except Exception as e:
                res["lite_interpreter_loads"] = False
                res["lite_interpreter_error"] = _first_line(e)
        sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


class FactsWorker:
    def __init__(self, env):
        self.env = env
        self.p = None

    def start(self):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--facts-worker"],
                                  cwd=ROOT, env=self.env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def ask(self, req):
        if self.p is None or self.p.poll() is not None:
            self.start()
        try:
            self.p.stdin.write((json.dumps(req) + "\n").encode())
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            rc = self.p.wait()
            self.p = None
            if rc < 0:
                import signal
                try:
                    why = "killed by %s" % signal.Signals(-rc).name
                except ValueError:
                    why = "killed by signal %d" % -rc
            else:
                why = "exit status %d" % rc
            return {"ok": False, "crash": why}
        return json.loads(line)

    def close(self):
        if self.p is not None and self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait()


def facts_for_model(name, entry, outdir, env):
    """Write the facts JSON beside every written variant of `name` (fresh processes)."""
    import facts as factsmod
    w = FactsWorker(env)
    try:
        pt = entry.get("variants", {}).get("pt", {})
        if "sha256" in pt:
            plain = w.ask({"path": os.path.join(outdir, pt["file"]), "ext": False})
            entry["loads_without_extensions"] = bool(plain.get("ok"))
            if not plain.get("ok"):
                entry["without_extensions_error"] = plain.get("error") or plain.get("crash")
            w.close()  # the next loads: a fresh process with the extensions imported
            w = FactsWorker(env)
        for key, _suffix, _ in VARIANTS:
            v = entry.get("variants", {}).get(key)
            if not v or "sha256" not in v:
                continue
            path = os.path.join(outdir, v["file"])
            jp = json_for(path)
            if os.path.exists(jp):
                os.remove(jp)
            lite = key in ("lite", "mobile")
            res = w.ask({"path": path, "ext": True, "lite": lite})
            if res.get("ok"):
                with open(jp, "wb") as f:
                    f.write(factsmod.dumps(res["facts"]).encode("utf-8"))
                v["facts"] = os.path.basename(jp)
            else:
                v["facts_error"] = res.get("error") or ("crash: " + res.get("crash", "?"))
            if lite:
                v["lite_interpreter_loads"] = res.get("lite_interpreter_loads")
                if "lite_interpreter_error" in res:
                    v["lite_interpreter_error"] = res["lite_interpreter_error"]
            if key in ("ptl", "lite_fb", "frozen_fb") and res.get("ok"):
                f = res["facts"]
                v["lite_interpreter_loads"] = f.get("lite_interpreter_loads")
                if "lite_interpreter_error" in f:
                    v["lite_interpreter_error"] = f["lite_interpreter_error"]
    finally:
        w.close()


# ------------------------------------------------------------------------ parent

def _is_small(entry):
    vs = [v for v in entry.get("variants", {}).values() if "size" in v]
    return bool(vs) and all(v["size"] <= SMALL_FILE for v in vs)


def _load_manifest(outdir):
    p = os.path.join(outdir, "manifest.json")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    return None


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def _versions():
    from importlib.metadata import version
    import platform
    res = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "torchaudio", "timm"):
        try:
            res[pkg] = version(pkg)
        except Exception:
            res[pkg] = None
    return res


def run_parent(outdir, names, jobs):
    os.makedirs(outdir, exist_ok=True)
    sys.path.insert(0, PEER)
    tmp = tempfile.mkdtemp(prefix="ptconform-models-home-")
    env = _sanitize_env(dict(os.environ), tmp)
    manifest = _load_manifest(outdir) or {}
    models = manifest.get("models", {})
    timings = {}
    t_all = time.time()
    pending = list(names)
    running = {}

    def finish(n, rc, so, se, t0):
        so = so.decode("utf-8", "replace")
        se = se.decode("utf-8", "replace")
        lines = [l for l in so.splitlines() if l.startswith("{")]
        if rc == 0 and lines:
            entry = json.loads(lines[-1])
        else:
            tail = [l for l in se.splitlines() if l.strip()]
            entry = {"family": MODELS[n]["family"], "constructor": MODELS[n]["ctor"],
                     "child_error": ("timeout" if rc is None else
                                     "exit status %s: %s" % (rc,
                                                             tail[-1] if tail else ""))}
        t_save = time.time() - t0
        facts_for_model(n, entry, outdir, env)
        entry["small"] = _is_small(entry)
        secs = {k: v.pop("seconds") for k, v in entry.get("variants", {}).items()
                if "seconds" in v}
        timings[n] = {"save_seconds": round(t_save, 1),
                      "total_seconds": round(time.time() - t0, 1), "variants": secs}
        models[n] = entry
        ok = sum(1 for v in entry.get("variants", {}).values() if "sha256" in v)
        print("%-40s %-7s %d/%d written  %8.1f MB  %6.1f s%s" % (
            n, entry.get("compiled"), ok, len(VARIANTS),
            sum(v.get("size", 0) for v in entry.get("variants", {}).values()) / 1e6,
            time.time() - t0, "" if "child_error" not in entry else "  " + entry["child_error"]),
            flush=True)

    # simple pool: the model child, then (in this thread) its facts children
    import threading
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                n = pending.pop(0)
            t0 = time.time()
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "recorded.py"), SELF, "--child", n, outdir], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            try:
                so, se = p.communicate(timeout=CHILD_TIMEOUT)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                p.kill()
                so, se = p.communicate()
                rc = None
            finish(n, rc, so, se, t0)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutil.rmtree(tmp, ignore_errors=True)

    manifest = {
        "generator": "oracle/makers/make_models.py",
        "versions": _versions(),
        "variants": {k: {"suffix": s, "writer": d} for k, s, d in VARIANTS},
        "facts_naming": "zip X.pt / X.lite.ptl -> X.json / X.lite.json; flatbuffer X.ptl -> X.ptl.json",
        "models": {n: models[n] for n in sorted(models)},
    }
    _write_json(os.path.join(outdir, "manifest.json"), manifest)
    total_t = time.time() - t_all
    old_t = {}
    tp = os.path.join(outdir, "timings.json")
    if os.path.exists(tp):
        with open(tp) as f:
            old_t = json.load(f).get("models", {})
    old_t.update(timings)
    _write_json(tp, {"last_run_seconds": round(total_t, 1), "last_run_models": list(names),
                     "jobs": jobs, "models": old_t})
    size = sum(os.path.getsize(os.path.join(outdir, f)) for f in os.listdir(outdir))
    print("%d models in %.1f s; %s holds %.1f MB" % (len(names), total_t, outdir, size / 1e6))
    return 0


def commit_small(outdir, dest):
    """Copy the small models (every variant <= SMALL_FILE), those with a file PyTorch
    cannot load first, then the quantized ones, then smallest total first, while
    the committed total stays <= SMALL_TOTAL, with their facts and a manifest of them."""
    manifest = _load_manifest(outdir)
    if manifest is None:
        sys.exit("no %s/manifest.json: run the generator first" % outdir)

    def files_of(e):
        res = []
        for v in e.get("variants", {}).values():
            if "sha256" in v:
                res.append(v["file"])
                if "facts" in v:
                    res.append(v["facts"])
        return res

    cands = []
    for n, e in manifest["models"].items():
        if e.get("small"):
            fs = files_of(e)
            # models with a file torch.jit.load rejects go first (the rarest vectors),
            # then the quantized ones
            rejected = any("facts_error" in v for v in e.get("variants", {}).values())
            quantized = "quantiz" in e.get("family", "")
            cands.append((not rejected, not quantized,
                          sum(os.path.getsize(os.path.join(outdir, f)) for f in fs), n, fs))
    cands.sort()
    chosen, skipped, total = {}, [], 0
    for _prio, _prio2, size, n, fs in cands:
        if total + size > SMALL_TOTAL:
            skipped.append(n)
            continue
        chosen[n] = fs
        total += size
    if os.path.isdir(dest):
        for f in os.listdir(dest):
            if f.endswith((".pt", ".ptl", ".json")):
                os.remove(os.path.join(dest, f))
    os.makedirs(dest, exist_ok=True)
    nfiles = 0
    for n in sorted(chosen):
        for f in chosen[n]:
            shutil.copyfile(os.path.join(outdir, f), os.path.join(dest, f))
            nfiles += 1
    sub = dict(manifest, models={n: manifest["models"][n] for n in sorted(chosen)})
    _write_json(os.path.join(dest, "manifest.json"), sub)
    print("copied %d files of %d small models (%.1f MB) to %s"
          % (nfiles, len(chosen), total / 1e6, dest))
    if skipped:
        print("small but over the %d MB budget: %s" % (SMALL_TOTAL >> 20, ", ".join(skipped)))
    return 0


def main():
    import argparse
    ap = argparse.ArgumentParser(description="generate the real-model corpus")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--small", action="store_true",
                    help="only the models marked small (by the last run's manifest, else "
                         "by this file)")
    ap.add_argument("--commit-small", action="store_true",
                    help="copy the small models of --out to corpus/models/ (no generation)")
    ap.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--child", nargs=2, metavar=("NAME", "OUTDIR"), help=argparse.SUPPRESS)
    ap.add_argument("--facts-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.list:
        for n, s in MODELS.items():
            print("%-42s %-26s %s" % (n, s["family"], "small" if s["small"] else ""))
        return 0
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = "0"
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  env)
    if args.child:
        return run_child(args.child[0], os.path.abspath(args.child[1]))
    if args.facts_worker:
        return run_facts_worker()
    outdir = os.path.abspath(os.path.expanduser(args.out))
    if args.commit_small:
        return commit_small(outdir, COMMIT_DIR)
    names = list(MODELS)
    if args.only:
        unknown = [n for n in args.only if n not in MODELS]
        if unknown:
            sys.exit("unknown model(s): %s (see --list)" % ", ".join(unknown))
        names = [n for n in names if n in args.only]
    if args.small:
        man = _load_manifest(outdir)
        if man is not None:
            names = [n for n in names if man["models"].get(n, {}).get("small",
                                                                      MODELS[n]["small"])]
        else:
            names = [n for n in names if MODELS[n]["small"]]
    return run_parent(outdir, names, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
