"""dam_utils: the code behind dam-book, one module per concept.

The groups follow the data flow, left to right; a module imports only from its own group or a group
above it (``tests/test_layers.py`` holds the exact tiers and fails on an import that points the other way).
Nothing is imported here, so ``import dam_utils`` stays cheap; import the modules themselves.

Foundations
    ``paths`` (where things live on disk), ``atomic`` (atomic file writes), ``provenance`` (commit,
    versions, device of a result), ``params`` (chapter parameters, config presets, ``PROFILES``),
    ``paper`` (the published numbers).
Data and model
    ``data_sources`` (MNIST bytes and their checksums), ``data`` (the verified cache as tensors),
    ``model`` (DAM_n, eqs. (1)-(2); ``N_PIXELS``, ``N_CLASSES``), ``checkpoint`` (training checkpoints).
Training
    ``train_config`` (``TrainConfig`` and its presets), ``health`` (dead memories), ``train`` (the
    training loop), ``artifacts`` (the manifest of committed models), ``book_models`` (``obtain_models``,
    the one way a chapter gets its models).
Attacks (sections 3-4 of the paper)
    ``objectives`` (eq. (4) and the direction of eq. (5)), ``descent`` (what both attacks share),
    ``rubbish`` (rubbish images, Fig. 3), ``deform`` (decision-boundary deformations, Fig. 4),
    ``sensitivity`` (the step-size study).
Metrics
    ``metrics`` (test error, features versus prototypes), ``rubbish_metrics`` (are rubbish images
    rubbish?), ``confidence`` (softmax confidence and beta_sm, Fig. 7), ``dead_memory_study``.
Experiments, results and verdicts (section 5)
    ``transfer`` (the experiments of Figs. 5-7), ``results_cache`` (their files and staleness),
    ``claims`` (every verdict rule and tolerance).
Presentation
    ``plots`` (chapter 1 and ``imshow_digit``), ``figures_attacks`` (chapters 2-3),
    ``figures_transfer`` (chapter 4), ``widgets`` (JupyterLab explorers), ``scorecard`` (the scorecard page).
Command lines
    ``reproduce`` (``python -m dam_utils.reproduce``: chapter 4's results).
"""

__version__ = "0.1.0"
