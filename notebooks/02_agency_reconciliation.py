# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Rekonsiliasi antar instansi / Cross-agency reconciliation
#
# How many of each agency's records other agencies also reported (same worker, destination and departure
# within the matching window), which placements only one agency reported, and where sources disagree.

# %%
import os

import duckdb
import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

WAREHOUSE = os.environ.get("SDMI_WAREHOUSE", "data/warehouse/sdmi.duckdb")
con = duckdb.connect(WAREHOUSE, read_only=True)

# %%
per_agency = con.sql(
    """SELECT agency, sum(rows_reported) AS rows_reported,
              sum(matched_in_other_agencies) AS matched_in_other_agencies,
              sum(unique_to_agency) AS unique_to_agency,
              round(sum(matched_in_other_agencies) / sum(rows_reported), 3) AS share_matched
       FROM v_agency_reconciliation GROUP BY ALL ORDER BY rows_reported DESC"""
).df()
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(per_agency["agency"], per_agency["matched_in_other_agencies"], label="matched / cocok")
ax.bar(per_agency["agency"], per_agency["unique_to_agency"], bottom=per_agency["matched_in_other_agencies"],
       label="unique / hanya di instansi ini")
ax.legend()
per_agency

# %% [markdown]
# ## Per bulan / Per month

# %%
monthly = con.sql(
    """SELECT make_date(departure_year, departure_month, 1) AS month, agency, share_matched
       FROM v_agency_reconciliation ORDER BY ALL"""
).df()
fig, ax = plt.subplots(figsize=(9, 3))
for agency, part in monthly.groupby("agency"):
    ax.plot(part["month"], part["share_matched"], label=agency)
ax.legend()
ax.set_title("Proporsi cocok / Share matched in other agencies")

# %% [markdown]
# ## Hanya satu instansi / Single-source placements, and conflicting fields

# %%
con.sql("SELECT source_agency, count(*) AS placements FROM v_single_source_placements GROUP BY ALL ORDER BY 2 DESC").df()

# %%
con.sql(
    """SELECT field, count(*) AS placements
       FROM (SELECT unnest(conflicting_fields) AS field FROM placements WHERE n_sources > 1)
       GROUP BY ALL ORDER BY placements DESC"""
).df()

# %%
con.close()
