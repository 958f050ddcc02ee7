"""report.md: the compile result for people (report.json holds the same numbers for scripts)."""

from __future__ import annotations


def _kib(n: int | float) -> str:
    return f"{n / 1024:.1f} KiB"


def render_markdown(result: dict) -> str:
    lines = [f"# amc bundle: {result['target']} / {result['backend']} ({result['variant']})", ""]
    lines += [f"Float model: {_kib(result['float_bytes'])}; three graphs: {_kib(result['bundle_graph_bytes'])} "
              f"({100 * result['size_ratio']:.1f}% of float). Compiled in {result.get('compile_seconds', '?')} s.", ""]
    lines += ["| graph | file | bytes | MACs/frame | weight dtypes |", "| --- | --- | --- | --- | --- |"]
    for name, g in result["graphs"].items():
        lines.append(f"| {name} | {g['file']} | {g['bytes']} | {g['macs_per_frame']} | {', '.join(g['weight_dtypes'])} |")
    state = result["state"]
    lines += ["", f"State tensors ({state['dtype']} at the graph boundary): h scale {state['h']['scale']}, zero point "
              f"{state['h']['zero_point']}; c scale {state['c']['scale']}, zero point {state['c']['zero_point']} "
              "(identical in fast and slow: the route can switch at any frame without requantizing).", ""]
    if result["variant"] == "int16x8":
        lines += ["Activations are int16 (weights int8): the recurrent state keeps 256 times the resolution "
                  "of int8, at twice the activation memory.", ""]
    calibration = result["calibration"]
    lines += [f"Calibration: {calibration['source']}; {calibration['calibration_utterances']} utterances, "
              f"{calibration['frames']} frames streamed, routing {100 * calibration['fast_fraction']:.1f}% fast at "
              f"{calibration['mflops']:g} MFLOP/s.", ""]
    if "mcu" in result:
        mcu = result["mcu"]
        lines += ["## Microcontroller", "",
                  "TFLite Micro arenas: " + ", ".join(f"{g} {_kib(b)}" for g, b in mcu["arena_bytes"].items()) + ".",
                  f"Flash need {_kib(mcu['flash_need_bytes'])} of {_kib(mcu['flash_budget_bytes'])}; RAM need "
                  f"{_kib(mcu['ram_need_bytes'])} of {_kib(mcu['ram_budget_bytes'])}.",
                  f"C sources: {', '.join(mcu['c_sources'])}.", ""]
    verification = result.get("verification")
    if verification:
        lines += ["## Verification (real runtimes)", "", "| graph | SNR one frame (dB) |", "| --- | --- |"]
        for name, v in verification["one_frame"].items():
            lines.append(f"| {name} | {v['snr_db']} |")
        stream = verification["stream"]
        lines += ["", f"Stream of {stream['seconds']} s (logits SNR, first second / last second; state SNR at the end):"]
        for name in ("slow", "fast"):
            s = stream[name]
            lines.append(f"- {name}: {s['first_second_snr_db']} / {s['last_second_snr_db']} dB; "
                         f"h {s['end_state_snr_db']['h']} dB, c {s['end_state_snr_db']['c']} dB")
        acc = verification["accuracy"]
        if acc.get("utterances"):
            lines += ["", f"Held-out audio ({acc['utterances']} utterances, backlog at {acc['mflops']:g} MFLOP/s): "
                      f"CER float {acc['float']['cer']}%, int8 {acc['int8']['cer']}% (delta {acc['cer_delta']}); "
                      f"fast fraction float {acc['float']['fast_fraction']}, int8 {acc['int8']['fast_fraction']}."]
        timing = verification["timing"]
        lines += ["", f"Per-frame wall time on the compiling machine, {timing['runtime']} called from Python "
                  f"(median of {timing['calls']} calls, dispatch included): fast/slow {timing['fast_over_slow']}, "
                  f"arbitrator/slow {timing['arbitrator_over_slow']}."]
        native = timing.get("native")
        if native and "unavailable" in native:
            lines.append(f"Native timing not measured: {native['unavailable']}.")
        elif native:
            us = native["median_us"]
            lines.append(f"Native, {native['runtime']}, the execute call timed in C++ (median of {native['calls']} "
                         f"interleaved calls, {native['threads']}): fast/slow {native['fast_over_slow']}, "
                         f"arbitrator/slow {native['arbitrator_over_slow']} (fast / slow / arbitrator "
                         f"{us['fast']} / {us['slow']} / {us['arbitrator']} us).")
        invoke = timing.get("invoke")
        if invoke:
            us = invoke["median_us"]
            lines.append(f"{invoke['runtime']} alone from Python (median of {invoke['calls']} interleaved calls, "
                         f"{invoke['threads']}): fast/slow {invoke['fast_over_slow']}, arbitrator/slow "
                         f"{invoke['arbitrator_over_slow']} (fast / slow / arbitrator {us['fast']} / {us['slow']} / "
                         f"{us['arbitrator']} us).")
        if "runtimes" in verification:
            lines += ["", "Runtimes: " + "; ".join(f"{k}: {v}" for k, v in verification["runtimes"].items())]
        if "amortized_macs_per_frame" in result:
            lines += ["", f"Amortized MACs/frame at the measured routing: {result['amortized_macs_per_frame']} "
                      f"({100 * result['amortized_vs_slow']:.1f}% of slow-only)."]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"
