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
# # Penempatan PMI: gambaran umum / Placements overview
#
# Reads the current release read-only (`SDMI_WAREHOUSE`, default `data/warehouse/sdmi.duckdb`).
# Placements are counted once even when several agencies reported them (`placements` table). Workers are
# counted by `placements.worker_key`, the key each placement was matched on: a mission's record with only a
# passport, matched to the one worker known by NIK with that passport, counts as that worker, not as another
# (`placement_records.worker_key` keeps each record's own key, its NIK's or its passport's).

# %%
import os

import duckdb
import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

WAREHOUSE = os.environ.get("SDMI_WAREHOUSE", "data/warehouse/sdmi.duckdb")
con = duckdb.connect(WAREHOUSE, read_only=True)
con.sql("SELECT count(*) AS placements, count(DISTINCT worker_key) AS workers FROM placements").df()

# %% [markdown]
# ## Tren bulanan / Monthly trend

# %%
monthly = con.sql(
    "SELECT month_start, sum(placements) AS placements FROM v_monthly_placements GROUP BY ALL ORDER BY 1"
).df()
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(monthly["month_start"], monthly["placements"])
ax.set_title("Penempatan per bulan / Placements per month")
monthly.tail(12)

# %% [markdown]
# ## Negara tujuan teratas / Top destinations

# %%
top = con.sql(
    """SELECT coalesce(destination_name_en, destination_country) AS destination, sum(placements) AS placements
       FROM v_monthly_placements GROUP BY ALL ORDER BY placements DESC LIMIT 10"""
).df()
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(top["destination"][::-1], top["placements"][::-1])
ax.set_title("10 negara tujuan teratas / Top 10 destinations")
top

# %% [markdown]
# ## Jenis kelamin dan sektor / Sex and sector

# %%
women = con.sql(
    """SELECT sector, sum(placements) AS placements, sum(women) AS women,
              round(sum(women) / nullif(sum(placements), 0), 3) AS share_women
       FROM v_women_share_by_sector GROUP BY ALL ORDER BY sector"""
).df()
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(women["sector"].astype(str), women["share_women"].astype(float))
ax.set_ylim(0, 1)
ax.set_title("Proporsi perempuan per sektor / Share of women by sector")
women

# %% [markdown]
# ## Provinsi asal / Province of origin

# %%
provinces = con.sql(
    """SELECT coalesce(origin_province_name, origin_province_code, 'UNKNOWN') AS province,
              sum(placements) AS placements
       FROM v_monthly_placements GROUP BY ALL ORDER BY placements DESC LIMIT 15"""
).df()
fig, ax = plt.subplots(figsize=(6, 4))
ax.barh(provinces["province"][::-1], provinces["placements"][::-1])
ax.set_title("Provinsi asal / Province of origin")
provinces

# %%
con.close()
