"""HashNet / HashNet-W / HashNet-C settings: the authors' solver at our base rate, and a digits preset."""

from tfhash.configs.common import eval_config, for_input_kind, takes_images

VARIANTS = ("hashnet", "hashnet-w", "hashnet-c")


def get_config(bits=32, data="digits", variant="hashnet"):
    """HashNet (Cao et al. 2017) and its Table 2 ablations; `python run/train_hashnet.py --bits 32`.

    `variant`: "hashnet" (the method), "hashnet-w" (all pair weights 1) or
    "hashnet-c" (no continuation: beta stays 1, train tanh(z), then sign).

    The solver is the authors' (Caffe, which produced the paper's figures):
    SGD with momentum 0.9 and weight decay 5e-4 (none on the hash layer's
    bias: Caffe's decay_mult 0), the hash layer at 10x and its bias at 20x
    the encoder's learning rate, the rate halved every 2,000 of 10,000
    steps, batch 256. alpha = 10 / bits and beta = (1 + 0.005 t) ** 0.5
    every 200 steps are the model's defaults. Adam is an option of the
    config: config["train"]["optimizer"] = "adam" (the multipliers and the
    halving still apply).

    The base learning rate is ours and depends on the input kind: 1e-2 on
    features (the `mlp` backbone), 3e-3 on an image backbone. The authors' 2e-4 (their ImageNet run;
    5e-5 on NUS-WIDE and COCO) fine-tunes a pretrained AlexNet; every
    backbone we can build starts from random weights and wants more. The
    rate was chosen on digits and kept for every other source, so no mnist
    or CIFAR-10 figure selected it; for the record, on mnist (32 bits,
    2,000 steps, seed 0) 2e-4 gave mAP@all 0.714 and 1e-2 gave 0.916. Pass
    --learning-rate 2e-4 to fine-tune a pretrained backbone as the authors did.
    On the conv backbone 1e-2 collapsed (mnist, 32 bits: 31 of 32 bits
    dead), so the image rate was chosen on mnist's validation split
    (`--validation`: queries held out of the database; conv, 32 bits, 2,000
    steps, seed 0): mAP@all 0.924 at 3e-4, 0.946 at 1e-3, 0.952 at 3e-3,
    0.953 at 5e-3, 0.181 at 1e-2. 3e-3 is within 0.001 of the best and a
    factor 3 from the collapse. `tfhash train` warns at 1e-2 or more on an
    image backbone (`config_note`).

    Measured on digits on 2 CPU cores shared with another job,
    `tfhash train hashnet --bits 32` reached mAP@all 0.966 (ITQ 0.655) in
    71 s of training (78 s in all). Digits saturates: in our own loop
    (same settings, no validation) HashNet-W reached 0.967 and HashNet-C
    0.960, so the ablations cannot be told apart here.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; received variant={variant!r}")
    config = {
        "method": variant,
        "model": {
            "bits": bits,
            "alpha": None,
            "weighting": "none" if variant == "hashnet-w" else "paper",
            "positive_weight": 1.0,
            "pairs": "halves",
            "continuation": variant != "hashnet-c",
            "continuation_gamma": 0.005,
            "continuation_interval": 200,
            "backbone": "mlp",
            "backbone_options": {},
        },
        "train": {
            "batch_size": 256,
            "steps": 10_000,
            "steps_per_epoch": 1000,
            "optimizer": "sgd",
            # ours, per input kind: 1e-2 chosen on digits features; 3e-3 on an image backbone, chosen on
            # mnist's validation split (docs/supervised.md), where 1e-2 collapsed
            "learning_rate": {"features": 1e-2, "images": 3e-3},
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "learning_rate_halving_steps": 2000,
            "learning_rate_multipliers": {"hash_layer": 10.0, "hash_bias": 20.0},
            "optimizers": {"hash_bias": {"weight_decay": 0.0}},
            "eval_every": 5,
            "validation_size": 1000,
        },
        "eval": eval_config(),
    }
    if data == "digits":
        config["train"].update({"validation_size": 200})
    return config


def config_note(config):
    """`tfhash train`'s warning for HashNet at a base rate of 1e-2 or more on an image backbone, where it
    collapsed."""
    rate = for_input_kind(config["train"], "images")["learning_rate"]
    if takes_images(config["model"].get("backbone", "mlp")) and rate >= 1e-2:
        return (
            f"on the conv backbone HashNet at base rate {rate:g} collapsed in our runs (1e-2: 31 of 32 bits "
            "dead on mnist); the image default is 3e-3, chosen on the validation split (docs/supervised.md)"
        )
    return None
