"""A nightly job: sums up the day's orders and keeps the report in the service's data dir.

Standard library only. dployr runs it on its schedule; $DPLOYR_DATA_DIR is a folder of the
service's own that outlives deploys, $DPLOYR_RUN the number of this run.
"""

import datetime
import os
import pathlib
import random

day = datetime.date.today().isoformat()
orders = [round(random.uniform(5, 120), 2) for _ in range(random.randint(20, 60))]
print(f"report {os.environ.get('DPLOYR_RUN', '?')} for {day}: {len(orders)} orders")
print(f"total {sum(orders):.2f} EUR")
folder = pathlib.Path(os.environ.get("DPLOYR_DATA_DIR", "."))
(folder / f"report-{day}.txt").write_text(f"{len(orders)} orders, {sum(orders):.2f} EUR\n")
print(f"written to {folder / f'report-{day}.txt'}")
