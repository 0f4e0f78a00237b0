/* RECAP Studio — Arena tab helpers (loaded in the page head).
 *
 * Keyboard shortcuts, active only while the Arena judging view is on screen and the cursor
 * is not in a text box:
 *   1 or ArrowLeft   Left better      2 or ArrowRight  Right better
 *   3 or T           Tie              4 or B           Both bad
 *   S                Skip             Enter            Start (before the first pair)
 * Verdict campaigns (one image, faithful or not):
 *   Y                Faithful         N                Not faithful
 *   1 … 9            tick / untick the k-th missing element (the pair keys 1–4 are hidden then)
 * They only click the buttons (#arena-btn-left, …) and check boxes, so the server does all the
 * work and the page behaves exactly as with the mouse.
 *
 * Time per judgment is measured here: window.recapArena.shown() is called (by a js-only
 * event chained after every event that puts a new pair on screen) and the vote buttons'
 * js= hook passes window.recapArena.elapsed() — milliseconds since the pair appeared, not
 * counting time while the browser tab was hidden — as the event's last input.
 * While a vote is in flight further vote keys are ignored, so a double key press can never
 * vote on a pair the annotator has not seen (the server also binds each vote to the token
 * of the pair that was on screen).
 */
(function () {
  if (window.recapArena) return;
  var state = { shownAt: null, hiddenMs: 0, hiddenSince: null, busy: false, busyTimer: null };
  window.recapArena = state;

  function now() {
    return window.performance && performance.now ? performance.now() : Date.now();
  }

  state.shown = function () {
    // after picking a campaign the cursor is still in its list, where keys would type: let them vote
    var active = document.activeElement;
    if (active && active.closest && active.closest("#arena-campaign")) active.blur();
    state.shownAt = now();
    state.hiddenMs = 0;
    state.hiddenSince = document.hidden ? now() : null;
    state.busy = false;
    if (state.busyTimer) clearTimeout(state.busyTimer);
    state.busyTimer = null;
    return [];
  };

  state.elapsed = function () {
    if (state.shownAt === null) return 0;
    var hidden = state.hiddenMs + (state.hiddenSince !== null ? now() - state.hiddenSince : 0);
    return Math.max(0, Math.round(now() - state.shownAt - hidden));
  };

  // Called by the vote buttons' js= hook: mark busy and hand over the elapsed time.
  state.voting = function () {
    state.busy = true;
    if (state.busyTimer) clearTimeout(state.busyTimer);
    // safety net: if the answer never comes (network error) the keys come back after 15 s
    state.busyTimer = setTimeout(function () { state.busy = false; }, 15000);
    return state.elapsed();
  };

  document.addEventListener("visibilitychange", function () {
    if (state.shownAt === null) return;
    if (document.hidden) {
      state.hiddenSince = now();
    } else if (state.hiddenSince !== null) {
      state.hiddenMs += now() - state.hiddenSince;
      state.hiddenSince = null;
    }
  });

  var KEYS = [
    { id: "arena-btn-left", keys: ["1", "ArrowLeft"], vote: true },
    { id: "arena-btn-right", keys: ["2", "ArrowRight"], vote: true },
    { id: "arena-btn-tie", keys: ["3", "t", "T"], vote: true },
    { id: "arena-btn-bad", keys: ["4", "b", "B"], vote: true },
    { id: "arena-btn-skip", keys: ["s", "S"], vote: true },
    { id: "arena-btn-yes", keys: ["y", "Y"], vote: true },
    { id: "arena-btn-no", keys: ["n", "N"], vote: true },
    { id: "arena-btn-start", keys: ["Enter"], vote: false },
  ];

  function shown(el) {
    return !!el && el.offsetParent !== null && el.getClientRects().length > 0;
  }

  function button(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    return el.tagName === "BUTTON" ? el : el.querySelector("button");
  }

  function typing(target) {
    if (!target || !target.closest) return false;
    if (target.isContentEditable) return true;
    var field = target.closest("textarea, input, select");
    if (!field) return false;
    var type = (field.getAttribute("type") || "").toLowerCase();
    return !(type === "checkbox" || type === "radio" || type === "button");
  }

  window.addEventListener(
    "keydown",
    function (e) {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      if (typing(e.target)) return;
      for (var i = 0; i < KEYS.length; i++) {
        if (KEYS[i].keys.indexOf(e.key) < 0) continue;
        var btn = button(KEYS[i].id);
        if (!shown(btn)) continue; // Arena view (or this button) not on screen
        e.preventDefault();
        e.stopPropagation();
        if (btn.disabled) return;
        if (KEYS[i].vote && state.busy) return;
        btn.click();
        return;
      }
      // verdicts: digits tick the prompt's elements (no pair button answered the key above)
      if (/^[1-9]$/.test(e.key) && !state.busy) {
        var group = document.getElementById("arena-missing");
        if (!shown(group)) return;
        var boxes = group.querySelectorAll("input[type=checkbox]");
        var box = boxes[Number(e.key) - 1];
        if (!box || box.disabled) return;
        e.preventDefault();
        e.stopPropagation();
        box.click();
      }
    },
    true
  );
})();
