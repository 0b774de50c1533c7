"""``seqedit stats --model M --editor E``: precompute the layer statistics an editor needs:
the second moments C0 of every edited layer (the hparams' ``layers``), in one pass.
Artefacts derived from C0 (AlphaEdit's null-space projection) are built and cached by the
editor's own ``prepare`` on first use."""

from __future__ import annotations

import json

from benchmark.commands.options import add_command, add_run_options, int_list, positive_int


def register(sub) -> None:
    p = add_command(sub, "stats", summary="precompute cached layer statistics for an editor",
                    description=__doc__.replace("``", ""), examples=(
                        "seqedit stats --model smollm2-135m --editor memit",
                        "seqedit stats --model tiny-gpt2 --editor rome --layers 1,2 --n-samples 100",
                    ))
    p.add_argument("--model", required=True, help="model: a registry name (seqedit models list)")
    p.add_argument("--editor", required=True, help="editing method (rome, memit, ...)")
    p.add_argument("--layers", type=int_list, default=None,
                   help="comma-separated layers (default: the editor's hparams)")
    p.add_argument("--n-samples", type=positive_int, default=None, help="override stats.n_samples")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from benchmark import models
    from benchmark.core import io
    from editors import stats
    from editors.hparams import check_model_layers, load_hparams

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"stats.n_samples": args.n_samples} if args.n_samples else None
    hp = load_hparams(args.editor, args.model, overrides)
    layers = args.layers or list(hp.layers)
    check_model_layers(args.editor, models.get_entry(args.model), layers,
                       source="--layers" if args.layers else None)
    lm = models.load(args.model, device=args.device, cache_dir=args.cache_root)
    before = stats.COMPUTE_COUNT["second_moment"]
    c0 = stats.second_moments(lm, layers, hp.stats, data_root=args.data_root,
                              cache_root=args.cache_root)
    computed = stats.COMPUTE_COUNT["second_moment"] - before
    result = {
        "model": args.model, "editor": args.editor, "layers": layers,
        "computed": computed, "loaded": len(layers) - computed,
        "keys": {str(layer): io.sha256_json(stats.stats_key(lm, layer, hp.stats, args.data_root))
                 for layer in layers},
        "trace": {str(layer): float(m.trace()) for layer, m in c0.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} {args.editor}: layers {layers}: computed {computed}, "
              f"loaded {len(layers) - computed} from the cache")
    return 0
