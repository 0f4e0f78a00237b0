/* RECAP Studio — Annotate tab helpers (loaded in the page head).
 *
 * Keyboard shortcuts, active only while the Annotate "Caption" view is on screen and
 * working while the cursor is in a caption box (listener in the capture phase):
 *   Ctrl+Enter (Cmd+Enter)  submit        Alt+ArrowRight  next
 *   Alt+ArrowLeft           previous      Alt+S           skip
 * They only click the buttons (#btn-submit, #btn-next, #btn-prev, #btn-skip), so the
 * server does all the work and the page behaves exactly as with the mouse.
 *
 * Unsaved-text guard: every edit in a caption box bumps window.recapAnnotate.inputs; the
 * events that save drafts send that counter (the tab's js= hook) and the server echoes it
 * in #draft-status [data-token]. While an edit is newer than the last echo, leaving or
 * reloading the page asks for confirmation.
 */
(function () {
  if (window.recapAnnotate) return;
  var state = { inputs: 0 };
  window.recapAnnotate = state;

  var KEYS = [
    { id: "btn-submit", test: function (e) { return (e.ctrlKey || e.metaKey) && !e.altKey && e.key === "Enter"; } },
    { id: "btn-next", test: function (e) { return e.altKey && !e.ctrlKey && !e.metaKey && e.key === "ArrowRight"; } },
    { id: "btn-prev", test: function (e) { return e.altKey && !e.ctrlKey && !e.metaKey && e.key === "ArrowLeft"; } },
    { id: "btn-skip", test: function (e) { return e.altKey && !e.ctrlKey && !e.metaKey && e.code === "KeyS"; } },
  ];

  function shown(el) {
    return !!el && el.offsetParent !== null && el.getClientRects().length > 0;
  }

  function button(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    return el.tagName === "BUTTON" ? el : el.querySelector("button");
  }

  window.addEventListener(
    "keydown",
    function (e) {
      if (e.repeat) return;
      for (var i = 0; i < KEYS.length; i++) {
        if (!KEYS[i].test(e)) continue;
        var btn = button(KEYS[i].id);
        if (!shown(btn)) return; // Annotate view not on screen: leave the key alone
        e.preventDefault();
        e.stopPropagation();
        if (!btn.disabled) btn.click();
        return;
      }
    },
    true
  );

  document.addEventListener(
    "input",
    function (e) {
      var t = e.target;
      if (t && t.closest && t.closest("#short-caption, #long-caption")) state.inputs += 1;
    },
    true
  );

  function savedToken() {
    var el = document.querySelector("#draft-status [data-token]");
    return el ? Number(el.getAttribute("data-token")) : null;
  }

  state.pending = function () {
    var saved = savedToken();
    return state.inputs > 0 && saved !== null && saved < state.inputs;
  };

  window.addEventListener("beforeunload", function (e) {
    if (!state.pending()) return;
    e.preventDefault();
    e.returnValue = "Your last edit is still being saved.";
    return e.returnValue;
  });
})();
