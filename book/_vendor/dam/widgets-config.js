// dam-book: glue between the ipywidgets HTML manager (embed-amd.js) and this site.
// Loaded after require.js and before embed-amd.js (see nb_ipywidgets_js in _config.yml).
(function () {
  var me = document.currentScript && document.currentScript.src;
  if (!me) return;

  // 1. Fonts. The bundle resolves its font files against the require.js URL of the module that
  // injects the CSS ("@jupyter-widgets/html-manager/dist/libembed-amd", "@jupyter-widgets/controls",
  // ...), by default the page's own directory: wrong for every page. Map those module names onto the
  // vendored directory _static/jupyter-widgets/ (next door to this script, in _static/dam/);
  // __jupyter_widgets_assets_path__ covers the inner bundles.
  var vendored = new URL("../jupyter-widgets/", me).href;
  window.__jupyter_widgets_assets_path__ = vendored;
  if (window.requirejs && window.requirejs.config) {
    window.requirejs.config({
      paths: {
        "@jupyter-widgets/html-manager/dist": vendored.replace(/\/$/, ""),
        "@jupyter-widgets": vendored.replace(/\/$/, ""),
      },
    });
  }

  // 2. Math in widget labels. The widgets typeset with the MathJax 2 call
  // MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book runs MathJax 3, which has no Hub,
  // so every widget with a description threw. Give MathJax 3 that one call. MathJax is loaded with
  // `defer`, so it is in place at DOMContentLoaded, before the widgets render (on `load`).
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (!Array.isArray(job) || job[0] !== "Typeset") return;
          var element = job[2];
          var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
          ready
            .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
            .catch(function (err) { console.warn("dam-book: MathJax could not typeset a widget label", err); });
        });
      },
    };
  });
})();
