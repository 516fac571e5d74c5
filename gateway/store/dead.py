"""Dead letters in the store: insert within the hard cap (exact per-reason totals), counts, pruning."""

from __future__ import annotations

from typing import Any


class DeadLettersMixin:
    """Store methods (mixin of fogline.gateway.store.core.Store) for the dead_letters and dead_letter_totals tables."""

    def _dead_letters(self, dl: list[tuple[Any, ...]]) -> None:
        """Insert dead letters within the cap (oldest rows go); per-reason totals count every one."""
        con = self.con
        totals: dict[str, int] = {}
        for d in dl:
            totals[d[4]] = totals.get(d[4], 0) + 1
        con.executemany("INSERT INTO dead_letter_totals(reason, n) VALUES (?, ?) "
                        "ON CONFLICT(reason) DO UPDATE SET n = n + excluded.n", list(totals.items()))
        cap = self.dead_letter_max
        if cap is not None:
            dl = dl[-cap:] if cap > 0 else []  # rows the cap would delete at once are never written
        if dl:
            con.executemany("INSERT INTO dead_letters(rx, link, source, topic, reason, detail, payload) "
                            "VALUES (?,?,?,?,?,?,?)", dl)
        if cap is not None:
            # ids only grow (oldest rows are the ones deleted), so this keeps at most `cap` rows
            con.execute("DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?", (cap,))

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead-letter rows kept now, per reason."""
        return dict(self.con.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason").fetchall())

    def dead_letter_totals(self) -> dict[str, int]:
        """Every dead letter ever recorded, per reason (persistent; not reduced by the cap or pruning)."""
        return dict(self.con.execute("SELECT reason, n FROM dead_letter_totals").fetchall())
