"""The published numbers the book compares against, in one place.

Every chapter that prints a value "beside the paper's" takes the paper's value from here, never
from a number typed into a notebook. Sources:

* :data:`CITATION` -- Krotov & Hopfield (2018), "Dense Associative Memory is Robust to
  Adversarial Inputs", Neural Computation 30(12):3151-3167, arXiv:1701.00939.
* :data:`CITATION_2016` -- Krotov & Hopfield (2016), "Dense Associative Memory for Pattern
  Recognition", NeurIPS 29, arXiv:1606.01164; its Appendix A is the training algorithm the
  2018 paper uses (:mod:`dam_utils.train`).
* :data:`CITATION_SLIDES` -- D. Krotov, talk slides "Dense Associative Memories and Deep Learning"
  (the n = 2 / n = 8 adversarial transfer table, :data:`SLIDES_TRANSFER_ERROR`).
* :data:`CITATION_HINTHORN` -- W. Hinthorn, "Visualization and Selective Dropout for Adversarial Image
  Classification" (Princeton undergraduate report): Tables 1-3 (:data:`HINTHORN_TABLES`) and the numbers of its
  text (``HINTHORN_*``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "BETA_SM",
    "BETA_SM_RANGE",
    "BETA_SM_SINGLE",
    "BETA_SM_SINGLE_Z",
    "CITATION",
    "CITATION_2016",
    "CITATION_HINTHORN",
    "CITATION_SLIDES",
    "EPOCHS_2016",
    "EPOCHS_BELOW_2PCT_2016",
    "FIG5_CORRECT_N30",
    "FIG5_IMAGES",
    "FIG5_TRANSFER_ERROR",
    "FIG6_CHANCE_CONFIDENCE",
    "FIG6_CLAIMS",
    "FIG6_MEAN_CONFIDENCE",
    "FIG6_PER_CLASS",
    "HINTHORN_BASE_ACCURACY",
    "HINTHORN_COLUMNS",
    "HINTHORN_N_PAIRS",
    "HINTHORN_TABLES",
    "MUSUNURU_N_ADV",
    "MUSUNURU_WRONG",
    "N_VALUES",
    "RANGES_2016",
    "SLIDES_IMAGENET_ACCURACY",
    "SLIDES_TRANSFER_ERROR",
    "TEST_ERROR",
    "TEST_ERROR_RANGE",
    "paper_test_error",
]

CITATION: Final = (
    "Krotov, D. and Hopfield, J. J. (2018). Dense Associative Memory Is Robust to Adversarial Inputs. "
    "Neural Computation 30(12), 3151-3167. arXiv:1701.00939."
)
CITATION_SLIDES: Final = (
    "Krotov, D. Dense Associative Memories and Deep Learning (talk slides; IBM Research, MIT-IBM Watson AI Lab, "
    "Institute for Advanced Study)."
)
CITATION_HINTHORN: Final = (
    "Hinthorn, W. Visualization and Selective Dropout for Adversarial Image Classification. Undergraduate report, "
    "Princeton University (adviser D. Dobkin)."
)
CITATION_2016: Final = (
    "Krotov, D. and Hopfield, J. J. (2016). Dense Associative Memory for Pattern Recognition. "
    "Advances in Neural Information Processing Systems 29, 1172-1180. arXiv:1606.01164."
)

#: The powers n of the energy function studied in the 2018 paper (Figs. 2-7).
N_VALUES: Final = (2, 3, 20, 30)

#: Test error (percent) on the clean MNIST test set, 2018 paper, Fig. 5 (right-hand column).
TEST_ERROR: Final = MappingProxyType({2: 1.51, 3: 1.44, 20: 1.61, 30: 1.80})

#: "throughout the range n = 2...30 ... error_test = 1.4 - 1.8 %" (2018 paper, section 2).
TEST_ERROR_RANGE: Final = (1.4, 1.8)

#: "comparable to the best result 1.6 %, achieved by the standard DNNs trained with backpropagation alone"
#: (section 2): the reference for chapter 5's ReLU network.
DNN_TEST_ERROR: Final = 1.6

#: Softmax slopes beta_sm fitted per model so that confidence matches the error (section 5, Fig. 7).
BETA_SM: Final = MappingProxyType({2: 4.7, 3: 4.6, 20: 4.0, 30: 26.0})
#: The single slope used for the transfer table of Fig. 6.
BETA_SM_SINGLE: Final = 3.2
#: The confidence Z = e^b / (e^b + 9 e^-b) ~ 0.985 (error ~1.5 %) from which the paper derives b ~ 3.2.
BETA_SM_SINGLE_Z: Final = 0.985
#: "all the conclusions presented below remain true, for any values of beta_sm as long as they stay
#: within the range 2 <= beta_sm <= 10^7" (section 5).
BETA_SM_RANGE: Final = (2.0, 1e7)

#: Fig. 5, adversarial transfer: ``FIG5_TRANSFER_ERROR[generator][tested]`` is the error rate (percent)
#: of the model with power ``tested`` on the 10000 images deformed one step behind the decision boundary
#: by the model with power ``generator``. Error = the label differs from the clean image's true label, so
#: the diagonal is ~99 %, not 100 % (footnote 3).
FIG5_TRANSFER_ERROR: Final = MappingProxyType(
    {
        2: MappingProxyType({2: 98.9, 3: 50.7, 20: 9.07, 30: 3.44}),
        3: MappingProxyType({2: 33.9, 3: 99.0, 20: 8.71, 30: 3.32}),
        20: MappingProxyType({2: 45.3, 3: 63.7, 20: 98.9, 30: 5.77}),
        30: MappingProxyType({2: 37.6, 3: 48.3, 20: 56.9, 30: 98.8}),
    }
)
#: Images per adversarial data set in Fig. 5 (the whole MNIST test set).
FIG5_IMAGES: Final = 10000
#: "The model with n = 30 ... can still correctly classify 97% of these cases" (images made by n = 2, 3).
FIG5_CORRECT_N30: Final = 97.0

#: Fig. 6, rubbish transfer: images per class (1000 per generating model), beta_sm = BETA_SM_SINGLE.
FIG6_PER_CLASS: Final = 100
#: The mean confidences (percent) that the paper's *text* states, as ``{(generator, tested): value}``.
#: The other cells of Fig. 6 are printed only in the figure (not in our source text); the ~10 % entries
#: are "an average confidence ~ 10 %" for rubbish made by n = 2 and n = 3 shown to n = 20 and n = 30.
FIG6_MEAN_CONFIDENCE: Final = MappingProxyType(
    {(2, 2): 98.5, (2, 20): 10.0, (2, 30): 10.0, (3, 20): 10.0, (3, 30): 10.0}
)
#: The flat-distribution confidence for 10 classes (Z = 1/10), the "~ 10 %" of Fig. 6.
FIG6_CHANCE_CONFIDENCE: Final = 10.0
#: The qualitative claims of section 5 about Fig. 6, checked by the book (dam_utils.scorecard).
FIG6_CLAIMS: Final = (
    "rubbish made by n = 2 is recognised by n = 3 with high confidence",
    "rubbish made by n = 2 and n = 3 gets ~10 % (chance) confidence from n = 20 and n = 30",
    "images made by n = 30 transfer to every model without loss in confidence",
)

#: Talk slides, "Input transfer": error rate (percent) of misclassification,
#: ``SLIDES_TRANSFER_ERROR[generator][tested]`` for models with n = 2 and n = 8.
SLIDES_TRANSFER_ERROR: Final = MappingProxyType(
    {2: MappingProxyType({2: 100.0, 8: 32.0}), 8: MappingProxyType({2: 57.0, 8: 100.0})}
)

#: Talk slides, "Results on ImageNet": accuracy (percent) of a DAM on top of VGG16 features.
SLIDES_IMAGENET_ACCURACY: Final = 69.0

#: Hinthorn's report: the base CNN's accuracy after 100 epochs (percent; §5) and the number of L-BFGS pairs (§5.1).
HINTHORN_BASE_ACCURACY: Final = 99.0
HINTHORN_N_PAIRS: Final = 208

#: Musunuru et al. (§II.B.2): adversarial images of the dense network recalled by the memory, and "the number of
#: images which were misclassified", printed as 0.7 (a count, a fraction or a typo: appendix C reads it every way).
MUSUNURU_N_ADV: Final = 40
MUSUNURU_WRONG: Final = 0.7

#: The columns of Tables 1-3: the control C (the same run under both layers) and SD_p for the second conv layer
#: (c) and the fully connected layer (f).
HINTHORN_COLUMNS: Final = ("C^c", "SD_0.2^c", "SD_0.5^c", "SD_0.7^c", "C^f", "SD_0.2^f", "SD_0.5^f", "SD_0.7^f")

#: Tables 1-3: accuracy on the withheld adversarial images, ``HINTHORN_TABLES[grouping][eta]`` in the order of
#: :data:`HINTHORN_COLUMNS`; groupings "both" (source and target, Table 1), "orig" (source, Table 2), "adv"
#: (target, Table 3), eta the initial learning rate. Copied as printed, Table 3's duplicates of Table 1 included.
HINTHORN_TABLES: Final = MappingProxyType({
    "both": MappingProxyType({0.001: (0.4634, 0.5854, 0.4634, 0.4756, 0.4634, 0.4390, 0.4634, 0.4878),
                              0.003: (0.5854, 0.5610, 0.4512, 0.5000, 0.5854, 0.5976, 0.5976, 0.5488)}),
    "orig": MappingProxyType({0.001: (0.1000, 0.3000, 0.6000, 0.4000, 0.1000, 0.4000, 0.4000, 0.4000),
                              0.003: (0.7000, 0.7000, 0.7000, 0.6000, 0.7000, 0.8000, 0.8000, 0.5000)}),
    "adv": MappingProxyType({0.001: (0.4634, 0.5854, 0.4634, 0.4756, 0.4634, 0.4512, 0.4268, 0.4634),
                             0.003: (0.5854, 0.5610, 0.4512, 0.5000, 0.5854, 0.5976, 0.5976, 0.5488)}),
})

#: Number of training epochs of the published models (2016 paper, Appendix A).
EPOCHS_2016: Final = 3000

#: Epochs after which the 2016 models' test error first fell below 2 % (2016 paper, Appendix A),
#: as (fastest, slowest) over their runs.
EPOCHS_BELOW_2PCT_2016: Final = MappingProxyType({2: (179, 312), 3: (158, 262)})

#: Published hyperparameter ranges of the training algorithm (2016 paper, Appendix A), inclusive.
#: ``T_small_i``/``T_small_f``: start/end of the linear temperature ramp for small n (over the first
#: ``ramp_epochs`` epochs); ``T_large``: the constant temperature for large n.
RANGES_2016: Final = MappingProxyType(
    {
        "K": (2000, 2000),
        "per_class": (100, 100),
        "p": (0.6, 0.95),
        "eps0": (0.01, 0.04),
        "f": (0.998, 0.998),
        "init_mean": (-0.3, -0.3),
        "init_std": (0.3, 0.3),
        "m_small": (2, 4),
        "m_large": (30, 30),
        "T_small_i": (250.0, 400.0),
        "T_small_f": (30.0, 100.0),
        "T_large": (500.0, 700.0),
        "ramp_epochs": (200, 200),
    }
)


def paper_test_error(n: int) -> float | None:
    """The paper's clean test error (percent) for power ``n``, or None if the paper has no model for it."""
    return TEST_ERROR.get(int(n))
