// MathJax 3 settings: $…$ / $$…$$ in the rendered notebooks, \( … \) / \[ … \] from pymdownx.arithmatex on pages.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
