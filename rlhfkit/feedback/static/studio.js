// rlhfkit feedback studio: keyboard shortcuts and the click-to-rank widget (no dependencies).
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "TEXTAREA" ||
                 (t.tagName === "INPUT" && t.type !== "checkbox" && t.type !== "radio"));
  }

  // Buttons with data-key="1 a" are *selected* by those keys (pairwise and score tasks); Enter
  // saves the selection, Esc clears it. A stray keypress (typing outside the reason box) therefore
  // never stores a label on its own; a mouse click on a button still saves at once.
  function setupButtonKeys(form) {
    var buttons = form.querySelectorAll("button[data-key]");
    if (!buttons.length) return;
    var status = form.querySelector("#selection");
    var selected = null;

    function select(button) {
      buttons.forEach(function (b) { b.classList.toggle("selected", b === button); });
      selected = button;
      if (status) {
        status.textContent = button ? "Selected: " + button.textContent.replace(/\s+/g, " ").trim() +
          " \u2014 press Enter to save, Esc to clear" : "";
      }
    }
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      if (event.key === "Escape") { select(null); return; }
      if (event.key === "Enter" && selected) {
        event.preventDefault();
        selected.classList.add("pressed");
        form.requestSubmit(selected);
        return;
      }
      var key = event.key.toLowerCase();
      for (var i = 0; i < buttons.length; i++) {
        if (buttons[i].dataset.key.split(" ").indexOf(key) >= 0) {
          event.preventDefault();
          select(buttons[i]);
          return;
        }
      }
    });
  }

  // Ranking: click (or press the number of) answers from best to worst.
  function setupRanking(form) {
    var cards = Array.prototype.slice.call(form.querySelectorAll(".rankable"));
    var input = form.querySelector("#order");
    if (!cards.length || !input) return;
    var order = [];

    function render(keepInput) {
      if (!keepInput) input.value = order.join(",");
      cards.forEach(function (card) {
        var pos = Number(card.dataset.pos), rank = order.indexOf(pos);
        card.classList.toggle("ranked", rank >= 0);
        card.querySelector(".badge").textContent = rank >= 0 ? String(rank + 1) : "";
      });
    }
    function pick(pos) {
      if (order.indexOf(pos) < 0) order.push(pos);
      if (order.length === cards.length - 1) {  // the last one is implied
        cards.forEach(function (c) { var p = Number(c.dataset.pos); if (order.indexOf(p) < 0) order.push(p); });
      }
      render();
    }
    input.addEventListener("input", function () {
      order = input.value.split(/[ ,]+/).filter(Boolean).map(Number);
      render(true);  // the person is typing: update the badges, leave the text alone
    });
    cards.forEach(function (card) {
      card.addEventListener("click", function () { pick(Number(card.dataset.pos)); });
    });
    var reset = form.querySelector("#rank-reset");
    if (reset) reset.addEventListener("click", function () { order = []; render(); });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      if (event.key === "Backspace" || event.key === "u") { order.pop(); render(); event.preventDefault(); return; }
      if (event.key === "Enter") { event.preventDefault(); form.requestSubmit(); return; }
      var n = Number(event.key);
      if (n >= 1 && n <= cards.length) { event.preventDefault(); pick(n); }
    });
  }

  // Step labels: G / N / B mark the highlighted step (then move on), Shift+B marks it and every
  // later step bad (they build on the mistake), arrows or J / K move, Esc clears the mark, Enter
  // saves once every step is marked (a form without JS still works: every step is a radio group).
  function setupSteps(form) {
    var steps = Array.prototype.slice.call(form.querySelectorAll(".step"));
    if (!steps.length) return;
    var status = form.querySelector("#selection");
    var current = 0;
    var KEYS = {g: "1", n: "0", b: "-1"}, WORDS = {"1": "good", "0": "neutral", "-1": "bad"};

    function checked(step) { return step.querySelector("input:checked"); }
    function render() {
      steps.forEach(function (step, i) {
        var c = checked(step);
        step.classList.toggle("active", i === current);
        ["good", "neutral", "bad"].forEach(function (w) {
          step.classList.toggle("marked-" + w, !!c && WORDS[c.value] === w);
        });
      });
      var left = steps.filter(function (s) { return !checked(s); }).length;
      if (status) status.textContent = left ? left + " step(s) still to mark" : "All steps marked — press Enter to save";
    }
    function move(to) {
      current = Math.max(0, Math.min(steps.length - 1, to));
      steps[current].scrollIntoView({block: "nearest"});
      render();
    }
    steps.forEach(function (step, i) {
      step.addEventListener("click", function () { current = i; render(); });
      step.addEventListener("change", render);
    });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      var key = event.key.toLowerCase();
      if (event.key === "B") {  // Shift+B: this step and every later one are bad
        event.preventDefault();
        for (var i = current; i < steps.length; i++) steps[i].querySelector('input[value="-1"]').checked = true;
        move(steps.length - 1);
      } else if (KEYS[key] !== undefined) {
        event.preventDefault();
        steps[current].querySelector('input[value="' + KEYS[key] + '"]').checked = true;
        move(current + 1);
      } else if (key === "arrowdown" || key === "j") { event.preventDefault(); move(current + 1); }
      else if (key === "arrowup" || key === "k") { event.preventDefault(); move(current - 1); }
      else if (key === "escape") {
        var c = checked(steps[current]);
        if (c) c.checked = false;
        render();
      } else if (key === "enter") {
        event.preventDefault();
        var missing = steps.findIndex(function (s) { return !checked(s); });
        if (missing >= 0) {
          move(missing);
          if (status) status.textContent = "Step " + (missing + 1) + " is not marked yet";
          return;
        }
        form.requestSubmit();
      }
    });
    render();
  }

  // Ctrl+Enter submits from a text box (critiques; pairwise reasons keep the choice buttons).
  function setupCtrlEnter(form) {
    form.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.name === "critique") {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  // One submission per page: a second press while the first is in flight is ignored.
  function guardDoubleSubmit(form) {
    var sent = false;
    form.addEventListener("submit", function (event) {
      if (sent) { event.preventDefault(); return; }
      sent = true;
    });
  }

  function setupBars() {
    document.querySelectorAll(".bar .fill[data-width]").forEach(function (el) {
      el.style.width = Math.max(0, Math.min(100, Number(el.dataset.width))) + "%";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupBars();
    var form = document.getElementById("label-form");
    if (!form) return;
    setupButtonKeys(form);
    setupRanking(form);
    setupSteps(form);
    setupCtrlEnter(form);
    guardDoubleSubmit(form);
  });
})();
