"""Safe derived-feature expressions: parsed, checked against an allow-list, re-written.

``segment.derived`` expressions go into the SQL of a ``SQLTransformer`` that is saved with
the registered model. Spark SQL can do far more than arithmetic (``reflect`` calls any
Java static method, a sub-query reads other tables), so an expression is parsed with
sqlglot (a SQL parser made for this; Splink uses it too), every node must be a column
reference, a literal, arithmetic, a comparison, a condition or an allowed function, and
the expression is re-written from the parse with every identifier quoted.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a feature (column) name

_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Paren,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.And, exp.Or, exp.Not, exp.Is,
    exp.Case, exp.If, exp.Coalesce, exp.Greatest, exp.Least, exp.Nullif,
    exp.Abs, exp.Ln, exp.Log, exp.Exp, exp.Sqrt, exp.Pow, exp.Round, exp.Floor, exp.Ceil,
    exp.Sign, exp.Cast, exp.TryCast, exp.DataType, exp.DataTypeParam,
)  # fmt: skip
# functions sqlglot does not model, by name
_FUNCTIONS = {"LOG1P", "EXPM1", "LOG10", "LOG2"}
_TYPES = {"DOUBLE", "FLOAT", "INT", "BIGINT", "DECIMAL", "BOOLEAN"}


class UnsafeExpressionError(ValueError):
    """An expression uses something outside the allow-list (named in the message)."""


def safe_expression(text: str) -> str:
    """``text`` re-written with quoted identifiers, once every node is allowed; raises
    ``UnsafeExpressionError`` naming the first node that is not."""
    try:
        tree = sqlglot.parse_one(text, read="spark")
    except sqlglot.errors.ParseError as err:
        raise UnsafeExpressionError(f"not one SQL expression ({str(err).splitlines()[0]})") from None
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            if node.name.upper() not in _FUNCTIONS:
                raise UnsafeExpressionError(
                    f"function {node.name}() is not allowed; allowed: arithmetic, comparisons, CASE, IF, "
                    "COALESCE, GREATEST, LEAST, NULLIF, ABS, LN, LOG, EXP, SQRT, POWER, ROUND, FLOOR, CEIL, "
                    f"SIGN, CAST and {sorted(_FUNCTIONS)}"
                )
            continue
        if not isinstance(node, _NODES):
            raise UnsafeExpressionError(
                f"{type(node).__name__} ({node.sql(dialect='spark')[:40]}) is not allowed"
            )
        if isinstance(node, exp.Column) and (node.table or not NAME.match(node.name)):
            raise UnsafeExpressionError(f"column {node.sql(dialect='spark')!r}: use a plain feature name")
        if isinstance(node, exp.DataType) and node.this.name not in _TYPES:
            raise UnsafeExpressionError(f"CAST to {node.sql(dialect='spark')} is not allowed")
    return tree.sql(dialect="spark", identify=True)
