"""Stage ``insights``: the answers the business asked for, from the gold and silver tables.

Profiles, value concentration, cost to serve and scenarios, the misallocation cohort,
segment migration, channel economics, monthly KPIs with trends and anomalies, match
uncertainty per segment, churn risk and recommendations that cite their numbers. Shares,
means, Ginis and correlations carry 95 % intervals from a one-pass Poisson bootstrap over
customers (``custseg.insights.bootstrap``). See docs/insights.md.
"""
