"""Progress renderers subscribed to engine events (the only layer that knows widgets).

- :mod:`.state` — :class:`~.state.RunState` folds events; :class:`~.state.Renderer` throttles redraws.
- :mod:`.dashboard` — the ipywidgets dashboard (JupyterLab, Notebook 7, VS Code).
- :mod:`.rich_live` — a rich live display for terminal IPython.
- :mod:`.plain` — concise log lines (nbclient, scripts, logs).
- :mod:`.select` — which renderer fits the environment, with overrides.
- :mod:`.summary` — the compact summary left in the output and the :class:`~.summary.MagicResult`.

Any renderer is a plain ``on_event`` callable, so it works with the engines directly::

    from nbmagic.ui.select import choose_renderer
    with choose_renderer() as ui:                # or make_renderer("plain")
        ui.start("question", engine="rlm")
        RLM(model, on_event=ui).query("...", context=text)
    # closed (summary drawn) however the block ended: done, failed or interrupted

Importing this package imports neither ipywidgets nor rich.
"""
