"""What the market-state engines share: their input panel and their bookkeeping rows.

* ``panel``   — ``MarketPanel``: one market's panels as dense session x instrument arrays, and
  ``load_market_panel`` to read it from the warehouse.
* ``records`` — ``engine_configs`` / ``engine_decisions`` rows of a market-state engine.

The engines themselves live one package each: ``prometheus_lib.regime``,
``prometheus_lib.stability`` (stability vectors and soft-target classes) and
``prometheus_lib.fragility``.
"""

from prometheus_lib.market_state.panel import MarketPanel, load_market_panel
from prometheus_lib.market_state.records import SHARED_MODE, decision_frame, engine_config_frame, engine_run_id

__all__ = ["SHARED_MODE", "MarketPanel", "decision_frame", "engine_config_frame", "engine_run_id", "load_market_panel"]
