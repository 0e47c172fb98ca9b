"""Customer lifetime value (stage ``clv``): BG/NBD + Gamma-Gamma on Spark summaries."""

from custseg.clv.models import BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from custseg.clv.predict import expected_purchases, predict_clv, prob_alive
from custseg.clv.summary import calibration_and_holdout, summarize_transactions

__all__ = [
    "BGNBDFit",
    "GammaGammaFit",
    "calibration_and_holdout",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "predict_clv",
    "prob_alive",
    "summarize_transactions",
]
