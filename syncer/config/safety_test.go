package config

import "testing"

func TestSafetyFor(t *testing.T) {
	const groups = "group web { host a b; key k; include /srv; }\ngroup etc { host a b; key k; include /etc; }\n"
	def := Safety{MaxDeletePercent: DefaultMaxDeletePercent, MaxDeleteCount: DefaultMaxDeleteCount}
	for _, tt := range []struct {
		name, src string
		web, etc  Safety
	}{
		{"defaults", "", def, def},
		{"global block", "safety { max-delete 20; max-delete-count 0; devices refuse; }\n",
			Safety{20, 0, true}, Safety{20, 0, true}},
		{"percent sign", "safety { max-delete 30%; }\n",
			Safety{30, 1000, false}, Safety{30, 1000, false}},
		{"group block overrides per setting", "safety { max-delete 20; devices refuse; }\nsafety web { max-delete 0; }\n",
			Safety{0, 1000, true}, Safety{20, 1000, true}},
		{"group block before the group and the global block", "safety web { devices allow; max-delete-count 5; }\n" + groups + "safety { devices refuse; }\n",
			Safety{50, 5, false}, Safety{50, 1000, true}},
		{"two blocks of one group add up", "safety etc { max-delete 1; }\nsafety etc { max-delete-count 2; }\n",
			def, Safety{1, 2, false}},
		{"empty blocks", "safety { }\nsafety web { }\n", def, def},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if len(src) < len(groups) || src[len(src)-len(groups):] != groups && !contains(src, groups) {
				src = groups + src
			}
			c, err := Parse("t.cfg", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.SafetyFor("web"); got != tt.web {
				t.Errorf("web: %+v, want %+v", got, tt.web)
			}
			if got := c.SafetyFor("etc"); got != tt.etc {
				t.Errorf("etc: %+v, want %+v", got, tt.etc)
			}
			if got := c.SafetyFor("nosuch"); got != c.Safety {
				t.Errorf("unknown group: %+v, want the global %+v", got, c.Safety)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
