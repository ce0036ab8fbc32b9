// Loaded before RequireJS and the ipywidgets embed script (nb_ipywidgets_js in _config.yml).
// The embed script's bundled modules (@jupyter-widgets/base, controls, html-manager, ...) place
// their icon fonts relative to their RequireJS module URLs, by default folders beside the page.
// Map those modules to _static/vendor/html-manager/, where `python -m blender_lib.book_assets` put
// the script and its fonts. A global `require` object defined before require.js loads is
// RequireJS's configuration.
(function () {
  var folder = new URL("vendor/html-manager", document.currentScript.src).href;
  window.require = {
    paths: {
      "@jupyter-widgets": folder,
      "@jupyter-widgets/html-manager/dist": folder,
    },
  };
  window.__jupyter_widgets_assets_path__ = folder + "/";
})();
