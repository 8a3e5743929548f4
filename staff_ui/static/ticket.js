// The ticket page's one enhancement: a transcript word plays the recording from where it was
// said. Served from /static (the CSP allows scripts from this origin only, never inline);
// without it the page is the same, the words are plain text.
//
// Keyboard: the transcript is one tab stop (the first word, then the last one chosen); the
// arrow keys move between words, Enter or Space plays from the word.
"use strict";

(function () {
  const transcript = document.querySelector("p.transcript[data-audio]");
  if (!transcript) {
    return;
  }
  const audio = document.getElementById(transcript.dataset.audio);
  const words = Array.from(transcript.querySelectorAll(".word[data-start]"));
  if (!audio || words.length === 0) {
    return;
  }

  function playFrom(seconds) {
    const start = () => {
      audio.currentTime = seconds;
      // A browser may refuse to play (autoplay rules); the position is set all the same.
      const playing = audio.play();
      if (playing) {
        playing.catch(() => {});
      }
    };
    if (audio.readyState >= HTMLMediaElement.HAVE_METADATA) {
      start();
      return;
    }
    // preload="none": nothing is known of the file yet; seek once its length is.
    audio.addEventListener("loadedmetadata", start, { once: true });
    audio.preload = "auto";
    audio.load();
  }

  function focusWord(index) {
    const next = words[Math.max(0, Math.min(words.length - 1, index))];
    words.forEach((word) => {
      word.tabIndex = word === next ? 0 : -1;
    });
    next.focus();
  }

  words.forEach((word, index) => {
    word.setAttribute("role", "button");
    word.tabIndex = index === 0 ? 0 : -1;
    const where = `${Number(word.dataset.start).toFixed(1).replace(".", ",")} s`;
    const unsure = word.title ? `, ${word.title.toLowerCase()}` : "";
    word.setAttribute("aria-label", `${word.textContent}${unsure}: lyssna från ${where}`);
    word.addEventListener("click", () => {
      focusWord(index);
      playFrom(Number(word.dataset.start));
    });
    word.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        playFrom(Number(word.dataset.start));
      } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
        event.preventDefault();
        focusWord(index + 1);
      } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
        event.preventDefault();
        focusWord(index - 1);
      } else if (event.key === "Home") {
        event.preventDefault();
        focusWord(0);
      } else if (event.key === "End") {
        event.preventDefault();
        focusWord(words.length - 1);
      }
    });
  });
  transcript.classList.add("seekable");
  const hint = document.querySelector(".word-seek-hint");
  if (hint) {
    hint.hidden = false;
  }
})();
