package exfil

import (
	"fmt"
	"strings"
	"time"
)

// BusinessHours says when a site works. Uploads outside these hours weigh
// more (a person is less likely to be behind them). The zero value is
// Monday to Friday, 08:00 to 18:00 UTC.
type BusinessHours struct {
	// Location is the site's time zone (nil: UTC). Appliances without a
	// zoneinfo database (gokrazy) need the binary to import time/tzdata
	// for names other than UTC.
	Location *time.Location
	// Start and End are times of day since local midnight. Zero for both
	// means 08:00-18:00. End before Start is a shift over midnight
	// (22:00-06:00), and belongs to the day it starts on.
	Start, End time.Duration
	// Days are the working days (nil: Monday to Friday).
	Days []time.Weekday
}

func (b *BusinessHours) defaults() {
	if b.Location == nil {
		b.Location = time.UTC
	}
	if b.Start == 0 && b.End == 0 {
		b.Start, b.End = 8*time.Hour, 18*time.Hour
	}
	if b.Days == nil {
		b.Days = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	}
}

func (b *BusinessHours) workday(d time.Weekday) bool {
	for _, w := range b.Days {
		if w == d {
			return true
		}
	}
	return false
}

// Contains reports whether t falls in business hours (b with defaults
// applied).
func (b BusinessHours) Contains(t time.Time) bool {
	b.defaults()
	lt := t.In(b.Location)
	tod := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute + time.Duration(lt.Second())*time.Second
	if b.Start <= b.End {
		return b.workday(lt.Weekday()) && tod >= b.Start && tod < b.End
	}
	// Over midnight: the evening part on a working day, or the morning
	// part after one.
	return (tod >= b.Start && b.workday(lt.Weekday())) || (tod < b.End && b.workday((lt.Weekday()+6)%7))
}

// String renders b as ParseBusinessHours reads it.
func (b BusinessHours) String() string {
	b.defaults()
	names := make([]string, len(b.Days))
	for i, d := range b.Days {
		names[i] = d.String()[:3]
	}
	days := strings.Join(names, ",")
	if days == "Mon,Tue,Wed,Thu,Fri" {
		days = "Mon-Fri"
	}
	hm := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return fmt.Sprintf("%s %s-%s %s", days, hm(b.Start), hm(b.End), b.Location)
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseBusinessHours reads the three parts of a configuration: days
// ("Mon-Fri", "Mon,Wed,Fri", "Sun-Thu"; "" = Mon-Fri), hours
// ("08:00-18:00", "22:00-06:00"; "" = 08:00-18:00) and an IANA time zone
// ("Europe/Berlin"; "" = UTC).
func ParseBusinessHours(days, hours, zone string) (BusinessHours, error) {
	var b BusinessHours
	if zone != "" {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return b, fmt.Errorf("business hours: time zone %q: %v (want an IANA name such as Europe/Berlin)", zone, err)
		}
		b.Location = loc
	}
	if hours != "" {
		from, to, ok := strings.Cut(hours, "-")
		if !ok {
			return b, fmt.Errorf("business hours %q: want HH:MM-HH:MM", hours)
		}
		var err error
		if b.Start, err = timeOfDay(from); err != nil {
			return b, fmt.Errorf("business hours %q: start: %v", hours, err)
		}
		if b.End, err = timeOfDay(to); err != nil {
			return b, fmt.Errorf("business hours %q: end: %v", hours, err)
		}
		if b.Start == b.End {
			return b, fmt.Errorf("business hours %q: start and end are equal", hours)
		}
	}
	if days != "" {
		b.Days = []time.Weekday{}
		for _, orig := range strings.Split(days, ",") {
			part := strings.ToLower(strings.TrimSpace(orig))
			from, to, isRange := strings.Cut(part, "-")
			f, ok1 := weekdays[from]
			t, ok2 := weekdays[to]
			if !ok1 || (isRange && !ok2) {
				return b, fmt.Errorf("business days %q: %q is not a day or a range of days (want Mon, Tue, ... or Mon-Fri)", days, strings.TrimSpace(orig))
			}
			if !isRange {
				t = f
			}
			for d := f; ; d = (d + 1) % 7 {
				if !b.workday(d) {
					b.Days = append(b.Days, d)
				}
				if d == t {
					break
				}
			}
		}
	}
	return b, nil
}

func timeOfDay(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || n != 2 || len(s) != 5 || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("%q is not a time of day (want HH:MM, 00:00 to 24:00)", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}
