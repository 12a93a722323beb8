"""SGH / Deep-SGH / R-SGH settings: SGH's MNIST demo and R-SGH's defaults, plus a digits preset."""

from tfhash.configs.common import eval_config


def get_config(bits=32, data="digits", variant="sgh"):
    """SGH (Dai et al. 2017) / R-SGH (Du et al. 2018); `python run/train_sgh.py --variant rsgh`.

    Training follows SGH's demo: Adam at 1e-2, batch 500, 5,000 steps,
    learning rate halved every 2,000 steps. R-SGH's defaults: rho 0.5,
    epsilon 0.05, delta = eta = 0.01. On the 1,797-item digits the budget is
    1,000 steps (about 10 s on 2 CPU cores).
    """
    config = {
        "method": variant,
        "model": {
            "bits": bits,
            "variant": variant,
            "alpha": 1e-3,
            "rho": 0.5,
            "epsilon": 0.05,
            "delta": 0.01,
            "eta": 0.01,
            "ridge": 1.0,
            "weight_decay": 1e-4,
            "threshold": "uniform",
        },
        "train": {
            "batch_size": 500,
            "steps": 5000,
            "steps_per_epoch": 500,
            "learning_rate": 1e-2,
            "learning_rate_halving_steps": 2000,
            "eval_every": 2,
            "validation_size": 1000,
        },
        "eval": eval_config(),
    }
    if data == "digits":
        config["train"].update({"steps": 1000, "steps_per_epoch": 100, "validation_size": 200})
    return config
