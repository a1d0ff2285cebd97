"""BioTorch's side of `benchmarks.peers.biotorch`: train or time BioTorch's ResNet-20 on arrays.

Runs in the venv of the benchmark-only extra `peers` (torch, torchvision, biotorch, and absl
through tensorboard; no TensorFlow: `make bench-peers` makes `.venv-peers`).
`benchmarks/peers/biotorch.py` starts it as a
subprocess and hands it a JSON spec; this module never reads Fashion-MNIST itself, so the
images, their order and their batches are exactly the ones the rlra_tf side trains on.

    python -m benchmarks.peers.torch_side --probe             # versions, or the ImportError
    python -m benchmarks.peers.torch_side --train=SPEC.json   # one training run, by epoch
    python -m benchmarks.peers.torch_side --time=SPEC.json    # a warm step-time worker

The model is BioTorch's own: `biotorch.models.small_resnet.resnet20` (He et al.'s CIFAR
ResNet-20, "option A" zero-padding shortcuts) with its first convolution made 1-channel for
the 28x28x1 images, converted to a rule by BioTorch's `create_torchvision_biomodel` (its
`BioModule`/`ModuleConverter`, which swap every Conv2d/Linear for the rule's layer). Rules are
BioTorch's modes (`bp` is its `backpropagation`). With `init="matched"` the forward weights
are then initialised as rlra_tf's ResNets do (He normal over the fan-out for convolutions,
Glorot uniform for the classifier, zero biases); BioTorch's feedback weights keep its own
initialisation. `init="native"` keeps BioTorch's (Xavier uniform everywhere).

The optimiser and schedule are rlra_tf's trainer's, rebuilt in torch: Adam (epsilon 1e-7,
Keras' default), AdamW or SGD with momentum, a linear warm-up then cosine decay per step
(`learning_rate`, the formula of `rlra_tf.schedules.WarmupSchedule`), and weight decay
applied as Keras applies it (decoupled, `w -= lr * wd * w` before the update, not on biases
or BatchNorm parameters).

Results go to stdout in `benchmarks.workers`' protocol; every other line is progress for a
person.
"""

import json
import math
import os
import time

from absl import app, flags

from benchmarks.workers import send, serve

# rlra_tf-style rule names -> BioTorch modes.
MODES = {"bp": "backpropagation", "fa": "fa", "usf": "usf", "frsf": "frsf", "brsf": "brsf",
         "dfa": "dfa"}
MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
INITS = ("matched", "native")


def learning_rate(step, peak, total_steps, warmup_steps=0, decay="cosine", alpha=0.0):
    """The rate at optimiser step `step` (0 for the first update): rlra_tf's `WarmupSchedule`.

    Linear warm-up `peak * (step + 1) / warmup_steps` while `step < warmup_steps`, then
    `"constant"` (`peak`) or `"cosine"` decay to `alpha * peak` at `total_steps`.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1.0) / warmup_steps
    if decay == "constant":
        return peak
    if decay != "cosine":
        raise ValueError(f"Expected decay 'constant' or 'cosine', received: decay={decay!r}")
    span = max(total_steps - warmup_steps, 1)
    p = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return peak * (alpha + (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * p)))


def probe():
    """The versions of torch, torchvision and biotorch (raises ImportError if one is absent)."""
    import importlib
    import importlib.metadata

    import numpy
    import torch
    import torchvision

    # After torch: a missing torch is reported as such, not as biotorch failing to import it.
    importlib.import_module("biotorch")

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "biotorch": importlib.metadata.version("biotorch"), "numpy": numpy.__version__}


def set_threads(threads):
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable before the first parallel work
        pass


def build_model(model, rule, num_classes, in_channels, init, seed):
    """BioTorch's CIFAR ResNet (1-channel stem for 28x28x1), converted to `rule`'s mode."""
    import contextlib
    import io

    import torch
    from biotorch.models import small_resnet
    from biotorch.models.utils import create_torchvision_biomodel

    if rule not in MODES:
        raise ValueError(f"Expected a rule among {sorted(MODES)}, received: {rule!r}")
    if model not in MODELS:
        raise ValueError(f"Expected a model among {MODELS}, received: {model!r}")
    if init not in INITS:
        raise ValueError(f"Expected init among {INITS}, received: {init!r}")

    def architecture(pretrained, progress, num_classes):
        net = getattr(small_resnet, model)(num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = torch.nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1,
                                        bias=False)
        return net

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # BioTorch prints its conversion log
        net = create_torchvision_biomodel(architecture, MODES[rule], None, False, True,
                                          num_classes)
    if init == "matched":
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return net


class Trainer:
    """One training step as rlra_tf's trainer takes it, in torch: forward, cross-entropy,
    backward (the rule's), decoupled weight decay, optimiser step, schedule step."""

    def __init__(self, net, rule, spec):
        import torch

        self.net, self.rule = net, rule
        self.loss_fn = torch.nn.CrossEntropyLoss()
        params = [p for p in net.parameters() if p.requires_grad]
        # Keras' NO_DECAY: biases and BatchNorm scale/offset (all 1-D here) are not decayed.
        self.decay = [p for p in params if p.ndim > 1]
        self.wd = float(spec.get("weight_decay") or 0.0)
        opt, lr = spec["optimizer"], spec["learning_rate"]
        if opt == "adam" or opt == "adamw":
            self.optimizer = torch.optim.Adam(params, lr=lr, eps=1e-7)
        elif opt == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=spec["momentum"])
        else:
            raise ValueError(f"Expected optimizer adam, adamw or sgd, received: {opt!r}")
        steps = spec["steps_per_epoch"]
        total = spec["epochs"] * steps
        warmup = int(round(spec["warmup_epochs"] * steps))
        self.schedule = lambda step: learning_rate(step, lr, total, warmup, spec["schedule"])
        self.step_count = 0

    def step(self, x, y):
        """One update on a batch (NCHW float tensor, int64 labels); returns (loss, hits)."""
        import torch

        self.net.train()
        lr = self.schedule(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.rule == "dfa":  # BioTorch's DFA broadcasts the output error from forward()
            out = self.net(x, targets=y, loss_function=self.loss_fn)
        else:
            out = self.net(x)
        loss = self.loss_fn(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.wd:
            with torch.no_grad():
                for p in self.decay:
                    p.mul_(1.0 - lr * self.wd)
        self.optimizer.step()
        self.step_count += 1
        return loss.detach(), (out.detach().argmax(1) == y).sum()


def to_torch(x, y, mean, std):
    """NHWC float images in [0, 1] -> standardised NCHW float32 tensor; labels -> int64."""
    import numpy as np
    import torch

    x = (np.asarray(x, np.float32) - np.float32(mean)) / np.float32(std)
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
            torch.from_numpy(np.asarray(y, np.int64)))


def evaluate(net, x, y, batch=500):
    """Accuracy and mean cross-entropy in inference mode (BatchNorm's moving statistics)."""
    import torch

    net.eval()
    hits, loss = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = net(x[i:i + batch])
            loss += float(torch.nn.functional.cross_entropy(out, y[i:i + batch],
                                                            reduction="sum"))
            hits += float((out.argmax(1) == y[i:i + batch]).sum())
    return hits / x.shape[0], loss / x.shape[0]


def _arrays(path):
    import numpy as np

    with np.load(path) as f:
        return f["x"], f["y"]


def _model_for(spec):
    net = build_model(spec["model"], spec["rule"], spec["num_classes"], spec["in_channels"],
                      spec["init"], spec["seed"])
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return net, int(n_params)


def train(spec):
    """Trains one run on the spec's per-epoch arrays; sends one line per epoch, then the run."""
    import torch

    set_threads(spec["threads"])
    net, n_params = _model_for(spec)
    trainer = Trainer(net, spec["rule"], spec)
    test_x, test_y = to_torch(*_arrays(os.path.join(spec["arrays"], "test.npz")),
                              spec["mean"], spec["std"])
    batch, epochs = spec["batch_size"], []
    started = time.perf_counter()
    for epoch in range(spec["epochs"]):
        x, y = to_torch(*_arrays(os.path.join(spec["arrays"], f"epoch{epoch}.npz")),
                        spec["mean"], spec["std"])
        steps = x.shape[0] // batch
        if steps != spec["steps_per_epoch"]:
            raise ValueError(f"Epoch {epoch} holds {steps} batches of {batch}, expected "
                             f"{spec['steps_per_epoch']}")
        start = time.perf_counter()
        loss_sum = torch.zeros(())
        hits = torch.zeros((), dtype=torch.int64)
        for s in range(steps):
            loss, h = trainer.step(x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch])
            loss_sum += loss
            hits += h
        seconds = time.perf_counter() - start
        if not math.isfinite(float(loss_sum)):
            raise FloatingPointError(f"Non-finite training loss in epoch {epoch + 1}")
        t0 = time.perf_counter()
        acc, test_loss = evaluate(net, test_x, test_y)
        entry = {"epoch": epoch + 1, "test_accuracy": acc, "test_loss": test_loss,
                 "test_examples": int(test_x.shape[0]),
                 "train_accuracy": float(hits) / (steps * batch),
                 "train_loss": float(loss_sum) / steps, "epoch_seconds": seconds,
                 "test_eval_seconds": time.perf_counter() - t0}
        epochs.append(entry)
        send({"epoch": entry})
        print(f"    epoch {epoch + 1}: test {100 * acc:.2f}% loss {test_loss:.4f} (train "
              f"{100 * entry['train_accuracy']:.1f}%, {seconds:.1f} s)", flush=True)
    send({"run": {"epochs": epochs, "forward_params": n_params,
                  "wall_seconds": time.perf_counter() - started}})


def time_worker(spec, lines=None):
    """Builds the run's model and optimiser, warms up, then times steps on `run N` lines."""
    set_threads(spec["threads"])
    net, n_params = _model_for(spec)
    trainer = Trainer(net, spec["rule"], spec)
    x, y = to_torch(*_arrays(spec["batch"]), spec["mean"], spec["std"])
    start = time.perf_counter()
    trainer.step(x, y)
    first = time.perf_counter() - start
    for _ in range(spec["warmup"] - 1):
        trainer.step(x, y)
    send({"ready": True, "first_step_seconds": first, "forward_params": n_params})

    def step():
        loss, _ = trainer.step(x, y)
        float(loss)  # the step is done when its loss is known (torch is eager anyway)

    serve(step, lines)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.probe:
        try:
            send({"versions": probe()})
        except ImportError as err:
            send({"error": f"{type(err).__name__}: {err}"})
            return 3
        return 0
    with open(FLAGS.train or FLAGS.time) as f:
        spec = json.load(f)
    if FLAGS.train:
        train(spec)
    else:
        time_worker(spec)
    return 0


if __name__ == "__main__":
    # Defined here, not at import: the rlra_tf side imports this module for its MODELS.
    flags.DEFINE_bool("probe", None, "Print the versions of torch, torchvision and biotorch.")
    flags.DEFINE_string("train", None, "Train the run of this SPEC.json, epoch by epoch.")
    flags.DEFINE_string("time", None, "Be a warm step-time worker for this SPEC.json.")
    flags.mark_flags_as_mutual_exclusive(["probe", "train", "time"], required=True)
    app.run(main)
