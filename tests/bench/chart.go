package main

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chartCap keeps a far-over-budget row from squashing the others.
const chartCap = 4.0

// chartPath is the PNG next to the report: BENCHMARKS.md → BENCHMARKS.png.
func chartPath(report string) string {
	return strings.TrimSuffix(report, ".md") + ".png"
}

// writeChart draws every budget row as a horizontal bar: the measured value
// as a fraction of its budget (1 = the budget; below passes), with the
// min–max over the rounds as a whisker. Green passes, red fails.
func writeChart(path string, budgets []budget) error {
	var rows []budget
	for _, b := range budgets {
		if b.measuredOK {
			rows = append(rows, b)
		}
	}
	if len(rows) == 0 {
		return fmt.Errorf("no budget row was measured")
	}
	// The first row at the top.
	n := len(rows)
	pass, fail := make(plotter.Values, n), make(plotter.Values, n)
	names := make([]string, n)
	var whisk plotter.XYs
	var errs plotter.XErrors
	labels := plotter.XYLabels{}
	for i, b := range rows {
		y := n - 1 - i
		v := math.Min(b.frac, chartCap)
		if b.pass {
			pass[y] = v
		} else {
			fail[y] = v
		}
		names[y] = b.label
		lo, hi := math.Min(b.lo, chartCap), math.Min(b.hi, chartCap)
		if hi > lo {
			whisk = append(whisk, plotter.XY{X: v, Y: float64(y)})
			errs = append(errs, struct{ Low, High float64 }{v - lo, hi - v})
		}
		txt := fmt.Sprintf("%.2f", b.frac)
		if b.frac > chartCap {
			txt = fmt.Sprintf("%.1f →", b.frac)
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: math.Min(math.Max(v, hi), chartCap) + 0.05, Y: float64(y)})
		labels.Labels = append(labels.Labels, txt)
	}
	p := plot.New()
	p.Title.Text = "ocf-csync against its budget (DESIGN §11): measured ÷ budget, below 1 passes"
	p.X.Label.Text = "fraction of the budget (median; whisker: min–max over the rounds)"
	p.X.Min, p.X.Max = 0, chartCap+0.6
	w := vg.Points(10)
	for _, v := range []struct {
		vals plotter.Values
		c    color.Color
	}{{pass, color.RGBA{R: 60, G: 160, B: 80, A: 255}}, {fail, color.RGBA{R: 210, G: 60, B: 50, A: 255}}} {
		bc, err := plotter.NewBarChart(v.vals, w)
		if err != nil {
			return err
		}
		bc.Horizontal = true
		bc.Color = v.c
		bc.LineStyle.Width = 0
		p.Add(bc)
	}
	if len(whisk) > 0 {
		eb, err := plotter.NewXErrorBars(struct {
			plotter.XYs
			plotter.XErrors
		}{whisk, errs})
		if err != nil {
			return err
		}
		eb.CapWidth = vg.Points(5)
		p.Add(eb)
	}
	line, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.6}, {X: 1, Y: float64(n) - 0.4}})
	if err != nil {
		return err
	}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	line.Width = vg.Points(1)
	p.Add(line)
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].YAlign = -0.5
	}
	p.Add(lb)
	p.NominalY(names...)
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, vg.Length(1.2+0.32*float64(n))*vg.Inch, path)
}
