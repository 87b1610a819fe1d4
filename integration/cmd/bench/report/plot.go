package report

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Series is one line of the plot: points (x, y) in data units.
type Series struct {
	Name   string
	Color  color.RGBA
	Points [][2]float64
}

// Plot draws series on linear axes from zero and returns the PNG.
func Plot(title, xLabel, yLabel string, series []Series) ([]byte, error) {
	const (
		w, h                     = 960, 600
		left, right, top, bottom = 110, 40, 70, 90
		scale                    = 2
	)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fillRect(img, 0, 0, w, h, color.White)
	black := color.RGBA{0, 0, 0, 255}
	grid := color.RGBA{225, 225, 225, 255}

	var xMax, yMax float64
	for _, s := range series {
		for _, p := range s.Points {
			xMax, yMax = math.Max(xMax, p[0]), math.Max(yMax, p[1])
		}
	}
	if xMax == 0 || yMax == 0 {
		return nil, fmt.Errorf("plot %q: no data", title)
	}
	xStep, yStep := niceStep(xMax), niceStep(yMax)
	xMax = math.Ceil(xMax/xStep) * xStep
	yMax = math.Ceil(yMax*1.05/yStep) * yStep
	pw, ph := w-left-right, h-top-bottom
	px := func(x float64) int { return left + int(math.Round(x/xMax*float64(pw))) }
	py := func(y float64) int { return top + ph - int(math.Round(y/yMax*float64(ph))) }

	for x := 0.0; x <= xMax+xStep/2; x += xStep {
		fillRect(img, px(x), top, 1, ph, grid)
		fillRect(img, px(x), top+ph, 1, 8, black)
		lbl := tickLabel(x, xStep)
		drawText(img, px(x)-textWidth(lbl, scale)/2, top+ph+14, lbl, scale, black)
	}
	for y := 0.0; y <= yMax+yStep/2; y += yStep {
		fillRect(img, left, py(y), pw, 1, grid)
		fillRect(img, left-8, py(y), 8, 1, black)
		lbl := tickLabel(y, yStep)
		drawText(img, left-14-textWidth(lbl, scale), py(y)-glyphH*scale/2+2, lbl, scale, black)
	}
	fillRect(img, left, top, 2, ph+1, black)
	fillRect(img, left, top+ph, pw+1, 2, black)
	drawText(img, (w-textWidth(title, scale))/2, 20, title, scale, black)
	drawText(img, left+(pw-textWidth(xLabel, scale))/2, h-36, xLabel, scale, black)
	drawText(img, 10, top-34, yLabel, scale, black)

	for i, s := range series {
		for j := 1; j < len(s.Points); j++ {
			drawLine(img, px(s.Points[j-1][0]), py(s.Points[j-1][1]), px(s.Points[j][0]), py(s.Points[j][1]), s.Color)
		}
		for _, p := range s.Points {
			fillRect(img, px(p[0])-5, py(p[1])-5, 11, 11, s.Color)
		}
		// Legend, top left inside the plot area.
		ly := top + 16 + i*28
		fillRect(img, left+20, ly, 30, 6, s.Color)
		drawText(img, left+60, ly-4, s.Name, scale, black)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// niceStep is a tick spacing of 1, 2 or 5 times a power of ten giving
// four to ten ticks up to max.
func niceStep(max float64) float64 {
	raw := max / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel writes v with as many decimals as the tick spacing needs.
func tickLabel(v, step float64) string {
	if v >= 1000 && math.Mod(v, 1000) == 0 {
		return fmt.Sprintf("%.0fK", v/1000)
	}
	decimals := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	return fmt.Sprintf("%.*f", decimals, v)
}

// drawLine is Bresenham's, three pixels thick.
func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		fillRect(img, x0-1, y0-1, 3, 3, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
