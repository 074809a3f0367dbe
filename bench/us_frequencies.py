"""Published US frequencies embedded as data for :mod:`independent_customers` (no Faker, nothing from
``canary.seeding``). Figures are approximations of the public sources, written from memory of them:

- surnames: US Census 2010 surname file, the ~300 most common with their share per 100,000 people and
  a group tag (``g`` general, ``h`` Hispanic, ``a`` Asian: the 2010 file's race/ethnicity columns),
  plus less common real surnames (ranks ~300-2,000, no share: they continue the rank curve);
- first names: SSA baby names by decade of birth and sex, the 40 most common with their births in
  thousands, the decade's births per sex (so the head's share is right), and a tail of real names
  tagged by era (``o`` born before ~1965, ``m`` 1960-1985, ``y`` after 1985, ``*`` any);
- places: states (population in thousands, IANA time zone, sales tax, Hispanic / Asian / Black
  population shares, ZIP3 ranges) and cities / suburbs / towns with their real ZIP ranges and area
  codes (each with the year it came into service: overlays are younger numbers);
- streets: the most common US street names (NLC / Census TIGER counts: Second, Third, First, Park,
  Main, Oak, Pine, Maple, Cedar, Elm...) and suffix shares;
- e-mail providers: US consumer address shares (gmail, yahoo, hotmail, aol...) with the age skew of
  each, ISP domains tied to the states they serve, and universities with their state.
"""

from __future__ import annotations

# -- surnames ------------------------------------------------------------------------------------
# "Name per100k group" (Census 2010; group g / h / a)
SURNAMES_TOP = """
Smith 828.2 g|Johnson 655.2 g|Williams 551.0 g|Brown 487.2 g|Jones 483.2 g|Garcia 395.3 h|Miller 393.7 g|Davis 378.5 g|
Rodriguez 381.7 h|Martinez 375.6 h|Hernandez 374.3 h|Lopez 294.4 h|Gonzalez 290.9 h|Wilson 271.9 g|Anderson 269.2 g|
Thomas 255.1 g|Taylor 251.2 g|Moore 241.7 g|Jackson 239.9 g|Martin 238.2 g|Lee 237.8 a|Perez 229.7 h|Thompson 227.1 g|
White 226.6 g|Harris 214.6 g|Sanchez 210.3 h|Clark 182.1 g|Ramirez 181.5 h|Lewis 175.8 g|Robinson 173.6 g|Walker 170.6 g|
Young 163.7 g|Allen 162.6 g|King 161.8 g|Wright 160.9 g|Scott 151.4 g|Torres 149.2 h|Nguyen 148.3 a|Hill 147.9 g|
Flores 146.8 h|Green 146.4 g|Adams 145.6 g|Nelson 143.9 g|Baker 141.3 g|Hall 141.0 g|Rivera 140.5 h|Campbell 133.9 g|
Mitchell 133.2 g|Carter 129.7 g|Roberts 129.0 g|Gomez 122.4 h|Phillips 121.2 g|Evans 120.4 g|Turner 119.5 g|Diaz 119.3 h|
Parker 118.2 g|Cruz 117.2 h|Edwards 116.0 g|Collins 115.3 g|Reyes 115.0 h|Stewart 114.2 g|Morris 111.5 g|Morales 111.1 h|
Murphy 109.1 g|Cook 107.4 g|Rogers 106.1 g|Gutierrez 104.1 h|Ortiz 103.5 h|Morgan 102.3 g|Cooper 101.1 g|Peterson 100.4 g|
Bailey 99.3 g|Reed 98.8 g|Kelly 97.4 g|Howard 97.2 g|Ramos 97.0 h|Kim 96.7 a|Cox 96.3 g|Ward 95.9 g|Richardson 95.1 g|
Watson 93.4 g|Brooks 93.1 g|Chavez 92.9 h|Wood 92.0 g|James 91.4 g|Bennett 91.0 g|Gray 90.3 g|Mendoza 89.4 h|Ruiz 89.1 h|
Hughes 88.9 g|Price 88.3 g|Alvarez 88.0 h|Castillo 87.3 h|Sanders 86.4 g|Patel 86.1 a|Myers 85.2 g|Long 84.4 g|Ross 84.1 g|
Foster 83.8 g|Jimenez 83.2 h|Powell 82.7 g|Jenkins 82.2 g|Perry 81.4 g|Russell 80.9 g|Sullivan 80.3 g|Bell 80.1 g|
Coleman 79.8 g|Butler 79.3 g|Henderson 78.9 g|Barnes 78.0 g|Gonzales 77.6 h|Fisher 76.9 g|Vasquez 76.4 h|Simmons 76.1 g|
Romero 75.8 h|Jordan 75.3 g|Patterson 75.0 g|Alexander 74.7 g|Hamilton 74.2 g|Graham 73.3 g|Reynolds 73.0 g|Griffin 72.8 g|
Wallace 72.1 g|Moreno 71.9 h|West 71.3 g|Cole 71.0 g|Hayes 70.8 g|Bryant 70.4 g|Herrera 70.3 h|Gibson 70.0 g|Ellis 69.8 g|
Tran 69.6 a|Medina 69.3 h|Aguilar 68.9 h|Stevens 68.4 g|Murray 68.1 g|Ford 67.4 g|Castro 67.1 h|Marshall 67.0 g|Owens 66.7 g|
Harrison 66.3 g|Fernandez 66.0 h|McDonald 65.9 g|Woods 65.4 g|Washington 65.1 g|Kennedy 64.9 g|Wells 64.3 g|Vargas 64.1 h|
Henry 63.9 g|Chen 63.4 a|Freeman 63.2 g|Webb 62.9 g|Tucker 62.4 g|Guzman 62.2 h|Burns 62.0 g|Crawford 61.8 g|Olson 61.4 g|
Simpson 61.2 g|Porter 61.0 g|Hunter 60.8 g|Gordon 60.6 g|Mendez 60.3 h|Silva 60.1 h|Shaw 59.9 g|Snyder 59.7 g|Mason 59.4 g|
Dixon 59.2 g|Munoz 59.0 h|Hunt 58.8 g|Hicks 58.5 g|Holmes 58.3 g|Palmer 58.1 g|Wagner 57.9 g|Black 57.4 g|Robertson 57.2 g|
Boyd 57.0 g|Rose 56.8 g|Stone 56.5 g|Salazar 56.3 h|Fox 56.1 g|Warren 55.9 g|Mills 55.7 g|Meyer 55.5 g|Rice 55.3 g|
Schmidt 55.1 g|Garza 54.9 h|Daniels 54.8 g|Ferguson 54.5 g|Nichols 54.3 g|Stephens 54.1 g|Soto 53.9 h|Weaver 53.7 g|
Ryan 53.5 g|Gardner 53.3 g|Payne 53.1 g|Grant 52.9 g|Dunn 52.8 g|Kelley 52.5 g|Spencer 52.3 g|Hawkins 52.1 g|Arnold 51.9 g|
Pierce 51.7 g|Vazquez 51.5 h|Hansen 51.3 g|Peters 51.1 g|Santos 50.9 h|Hart 50.7 g|Bradley 50.6 g|Knight 50.4 g|
Elliott 50.2 g|Cunningham 50.0 g|Duncan 49.8 g|Armstrong 49.7 g|Hudson 49.5 g|Carroll 49.3 g|Lane 49.1 g|Riley 48.9 g|
Andrews 48.8 g|Alvarado 48.6 h|Ray 48.4 g|Delgado 48.2 h|Berry 48.1 g|Perkins 47.9 g|Hoffman 47.7 g|Johnston 47.6 g|
Matthews 47.4 g|Pena 47.2 h|Richards 47.1 g|Contreras 46.9 h|Willis 46.7 g|Carpenter 46.6 g|Lawrence 46.4 g|Sandoval 46.3 h|
Guerrero 46.1 h|George 46.0 g|Chapman 45.8 g|Rios 45.7 h|Estrada 45.5 h|Ortega 45.4 h|Watkins 45.2 g|Greene 45.1 g|
Nunez 44.9 h|Wheeler 44.8 g|Valdez 44.6 h|Harper 44.5 g|Burke 44.3 g|Larson 44.2 g|Santiago 44.0 h|Maldonado 43.9 h|
Morrison 43.8 g|Franklin 43.6 g|Carlson 43.5 g|Austin 43.3 g|Dominguez 43.2 h|Carr 43.1 g|Lawson 42.9 g|Jacobs 42.8 g|
O'Brien 42.7 g|Lynch 42.5 g|Singh 42.4 a|Vega 42.3 h|Bishop 42.1 g|Montgomery 42.0 g|Oliver 41.9 g|Jensen 41.8 g|
Harvey 41.6 g|Williamson 41.5 g|Gilbert 41.4 g|Dean 41.2 g|Sims 41.1 g|Espinoza 41.0 h|Howell 40.9 g|Li 40.7 a|Wong 40.6 a|
Reid 40.5 g|Hanson 40.4 g|Le 40.2 a|McCoy 40.1 g|Garrett 40.0 g|Burton 39.9 g|Fuller 39.8 g|Wang 39.7 a|Weber 39.5 g|
Welch 39.4 g|Rojas 39.3 h|Lucas 39.2 g|Marquez 39.1 h|Fields 39.0 g|Park 38.9 a|Yang 38.8 a|Little 38.6 g|Banks 38.5 g|
Padilla 38.4 h|Day 38.3 g|Walsh 38.2 g|Bowman 38.1 g|Schultz 38.0 g|Luna 37.9 h|Fowler 37.8 g|Mejia 37.7 h
"""

# ranks ~300-2,000 (no share; they continue the rank curve), by group
SURNAMES_MORE: dict[str, str] = {
    "g": """Davidson Brewer Hoover Horton Ramsey Cannon Barker Newton Floyd Bates Sharp Norris Steele Hale Holt Potter
        Mack Marsh Bowen Parsons Gross Zimmerman Ball Klein Caldwell Lowe Fleming Swanson Frazier Pearson Schneider
        Curtis Francis Moss Hammond Schroeder Gregory Watts Stanley Hardy Fletcher Cross Rhodes Mccarthy Kline Walton
        Barrett Atkinson Norman Schwartz Strickland Yates Becker Sutton Byrd Bass Chambers Townsend Goodwin Glover Hodges
        Dennis Harmon Lambert Page Quinn Hogan Tate Mann Cobb Shelton Ward Parks Wise Hines Kramer Wolfe Blair Frank
        Craig Hardin Lyons Sherman Beck Clayton Hubbard Mccormick Manning Booth Stokes Norton Bush Kaufman Gill Graves
        Sparks Pope Goodman Reese Sexton Odom Whitaker Mcgee Hurst Blackwell Whitehead Mccall Hendrix Nolan Donovan
        Fitzgerald Gallagher Doyle Callahan Kavanagh Brennan Keller Novak Kowalski Nowak Wojcik Lewandowski Kaminski
        Zielinski Szymanski Wozniak Kozlowski Jankowski Mazur Krueger Schaefer Hartmann Vogel Fischer Richter Wolff
        Koch Bauer Koenig Lehmann Schmitt Werner Braun Hoffmann Zimmer Krause Meier Lange Schulz Russo Romano Marino
        Rossi Ricci Colombo Esposito Bruno Gallo Conti DeLuca Mancini Costa Giordano Lombardi Moretti Barbieri Ferrari
        Caruso Santoro Rinaldi Leone Longo Gentile Martinelli Vitale Serra Coppola DeAngelis Ferraro Fontana Parisi
        Sorensen Larsen Nielsen Christensen Rasmussen Petersen Johansen Lindqvist Lindberg Nystrom Berglund Lund
        Dahl Swenson Carlsen Haugen Halvorson Thorson Gustafson Hedlund Engstrom Sandberg Holm Friedman Goldberg
        Cohen Katz Levine Shapiro Rosen Bernstein Weiss Stein Rosenberg Feldman Silverman Kaplan Greenberg Abrams
        Hutchinson Cummings Mcdaniel Mckenzie Mckinney Mcclain Mcintosh Mcbride Mckee Mcgrath Mcneil Mcmahon O'Connor
        O'Neal O'Neill O'Donnell O'Hara O'Leary Dougherty Flanagan Gallegos Kirby Conner Moody Dawson Pittman Ayers
        Benson Rowe Ingram Blake Cochran Harrington Patton Whitney Finley Wiley Burgess Hancock Valentine Underwood
        Emerson Preston Sawyer Rollins Chandler Goff Dalton Spears Decker Bauman Pruitt Farmer Hess Landry Hebert
        Thibodeaux Guidry Broussard Boudreaux Fontenot Arceneaux Melancon Robichaux Babin Comeaux Dupre Leblanc
        Richard Gagnon Pelletier Ouellette Cote Levesque Bouchard Morin Roy Thibodeau Caron Jefferson Freeman Mosley
        Gaines Tillman Hairston Boykin Sapp Merritt Battle Pettaway Dorsey Cherry Holloway Rucker Staton Willoughby
        Yoder Stoltzfus Hershberger Troyer Miller Beiler Esh Zook Lapp Hochstetler Amundson Nygaard Bjork Ecklund""",
    "h": """Herrera Medina Rosales Acosta Cabrera Calderon Campos Cervantes Chacon Cortez Cuevas Escobar Espinosa
        Fuentes Galvan Garza Huerta Ibarra Juarez Lara Leon Lozano Mora Navarro Orozco Pacheco Quintero Rangel Rocha
        Salinas Serrano Solis Trevino Trujillo Valencia Velasquez Villarreal Zamora Zuniga Aguirre Avila Ayala Barrera
        Bautista Benitez Bravo Cardenas Carrillo Ceja Cisneros Corona Duarte Enriquez Esquivel Figueroa Franco Gallardo
        Gamez Hidalgo Jaramillo Lucero Macias Magana Marin Meza Miranda Molina Montes Montoya Nava Ochoa Olivares Osorio
        Pineda Ponce Quintana Robles Rosario Sandoval Sosa Suarez Tapia Valle Vela Velez Villa Zapata Arellano Arroyo
        Barajas Beltran Caballero Camacho Carrasco Castaneda Chavarria Coronado Dominguez Esparza Garibay Godinez
        Guerra Lugo Madrigal Manzano Mercado Montalvo Nieves Olvera Pagan Quinones Rivas Saldana Tovar Urbina Varela""",
    "a": """Nguyen Tran Le Pham Hoang Huynh Phan Vu Vo Dang Bui Do Ho Ngo Duong Ly Chen Wang Li Liu Zhang Lin Huang Wu
        Zhou Xu Sun Ma Zhu Hu Guo He Lin Luo Zheng Liang Xie Tang Han Feng Deng Cao Yu Cheung Chan Chang Chow Lam Leung
        Ng Tsang Yee Fong Kwan Kim Park Choi Cho Kang Yoon Jang Lim Han Shin Oh Seo Kwon Hwang Ahn Song Jeon Hong Patel
        Shah Singh Kumar Sharma Gupta Mehta Desai Joshi Reddy Rao Iyer Nair Chopra Kapoor Malhotra Agarwal Bhatt Trivedi
        Tanaka Nakamura Yamamoto Suzuki Watanabe Takahashi Kobayashi Sato Ito Yamada Santos Reyes Cruz Garcia Bautista
        Dela Cruz Ramos Mendoza Villanueva Aquino Castillo Fernandez Domingo Pascual Manalo Soriano Tolentino Ocampo""",
}

# deep tail: composed like real rare surnames of each origin (a name composed is one a few families hold)
TAIL_PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "english": (("Ash", "Black", "Brad", "Brook", "Craw", "Dal", "Fair", "Hart", "Hol", "Kings", "Lang", "Mar",
                 "North", "Pem", "Ray", "Sher", "Stan", "Whit", "Wood", "Ald", "Bark", "Brig", "Chat", "Crom",
                 "Dun", "Eld", "Farn", "Glad", "Hath", "Kirk", "Lock", "Mid", "Mor", "Pad", "Rad", "Rut", "Sal",
                 "Staf", "Thorn", "Wal", "Wen", "Wins", "Ack", "Bram", "Cald", "Dray", "Ever", "Hadd", "Hux", "Pres"),
                ("ley", "ton", "field", "ford", "wood", "well", "by", "man", "ridge", "worth", "ington", "er",
                 "son", "wick", "more", "ham", "stead", "combe", "dale", "brook", "cott", "hurst", "land", "low")),
    "german": (("Hoff", "Kauf", "Schwar", "Stein", "Bau", "Eich", "Lind", "Rein", "Hart", "Ober", "Kessel", "Reich",
                "Wein", "Rosen", "Alt", "Brand", "Eisen", "Gold", "Grun", "Hein", "Kirch", "Moss", "Neu", "Sauer",
                "Schuh", "Spiel", "Strass", "Zell", "Dietz", "Engel", "Fried", "Gutt", "Herz", "Lieb"),
               ("man", "mann", "berger", "er", "feld", "hardt", "ler", "inger", "meyer", "baum", "berg", "stein",
                "hauser", "lein", "kamp", "bach", "horst", "dorf", "heim", "wald")),
    "italian": (("Bell", "Cap", "Cor", "Fal", "Gian", "Mar", "Pic", "Ross", "Sant", "Ves", "Ang", "Bar", "Cas",
                 "Del", "Fer", "Gal", "Lom", "Mor", "Pal", "Ric", "Sal", "Tor", "Val", "Zan", "Bon", "Car", "Dom"),
                ("ini", "elli", "etti", "ano", "ucci", "one", "iero", "ozzi", "ardi", "aro", "ino", "otti", "ella")),
    "polish": (("Kowal", "Nowa", "Wis", "Zal", "Krol", "Dab", "Jab", "Pawl", "Mich", "Grab", "Sob", "Lis", "Wol",
                "Kacz", "Kub", "Mal", "Pio", "Sad", "Szcz", "Wal", "Zaj", "Bor", "Chmiel", "Dud", "Gor"),
               ("ski", "wski", "czyk", "ak", "ewicz", "owicz", "iak", "ek", "inski", "owski")),
    "irish": (("Mc", "Mac", "O'"), ("Carthy", "Donnell", "Guire", "Laughlin", "Kenna", "Gowan", "Bride", "Cormack",
                                    "Mahon", "Namara", "Sweeney", "Keever", "Garry", "Hale", "Kinnon", "Cready",
                                    "Dermott", "Ginnis", "Grath", "Loughlin", "Nulty", "Cann", "Dowell", "Farland")),
    "scandinavian": (("And", "Berg", "Dahl", "Eng", "Gus", "Hag", "Jo", "Lar", "Lind", "Nord", "Ols", "Pet", "Sand",
                      "Sven", "Tor", "Ek", "Hol", "Nyl", "Sjo", "Wick"), ("son", "sen", "strom", "quist", "berg",
                                                                               "gren", "lund", "stad", "vik", "by")),
    "french": (("Bou", "Beau", "Char", "Dup", "Fon", "Gau", "Lam", "Mar", "Pel", "Roch", "Thib", "Ver", "Bel", "Cour",
                "Duch", "Gir", "Lec", "Mor", "Ren", "Tess"), ("eau", "ier", "ette", "ard", "ault", "elle", "on", "in",
                                                              "ot", "and", "eaux", "erre")),
    "greek": (("Pap", "Kon", "Ant", "Dim", "Geor", "Nik", "Chris", "Kar", "Vas", "Stav", "Theo", "Mak", "Spir",
               "Kost", "Pan"), ("opoulos", "akis", "ides", "iou", "atos", "opoulou", "elis", "ou")),
    "slavic": (("Kovach", "Petr", "Shev", "Tkach", "Boyk", "Hrush", "Kravch", "Mel", "Sav", "Yar", "Dub", "Kozl",
                "Moroz", "Pol", "Zhur"), ("enko", "chuk", "iuk", "ov", "ova", "ich", "yshyn", "ak", "in", "sky")),
    "armenian": (("Hov", "Sark", "Gev", "Mkrt", "Arut", "Kaz", "Bagd", "Ter", "Aved", "Manuk", "Petros", "Kesh"),
                 ("ian", "yan", "asian", "arian", "ikian")),
    "jewish": (("Gold", "Silver", "Rosen", "Green", "Blum", "Wein", "Lieber", "Fein", "Hirsch", "Kirsch", "Eisen",
                "Apfel", "Mandel", "Rubin", "Schon"), ("berg", "stein", "baum", "feld", "man", "thal", "witz", "blatt",
                                                       "wasser", "zweig")),
    "hispanic": (("Alva", "Bece", "Cama", "Esca", "Galin", "Laba", "Maldo", "Nava", "Olive", "Quinta", "Sepul",
                  "Urri", "Valdi", "Zava", "Arme", "Berme", "Canta", "Dura", "Feli", "Gual", "Lomel", "Pala"),
                 ("rez", "nez", "do", "ro", "das", "les", "rio", "zar", "via", "lla", "ndo", "ras", "ño", "gas")),
}

# -- first names (SSA, by decade of birth) ---------------------------------------------------------
# decade: (male births k, female births k, "Name k ..." male top 40, female top 40)
FIRST_BY_DECADE: dict[int, tuple[int, int, str, str]] = {
    1940: (16300, 15600,
           ("James 795 Robert 691 John 665 William 536 Richard 464 David 430 Charles 343 Thomas 316 Michael 288 "
           "Ronald 233 Larry 219 Donald 198 Joseph 197 Gary 188 George 162 Kenneth 160 Paul 150 Edward 144 Jerry 139 "
           "Dennis 136 Frank 121 Daniel 112 Raymond 111 Roger 103 Stephen 97 Gerald 93 Walter 89 Harold 84 Steven 82 "
           "Douglas 80 Lawrence 79 Terry 77 Wayne 75 Arthur 70 Jack 68 Carl 67 Henry 64 Willie 63 Bruce 61 Joe 56"),
           ("Mary 640 Linda 404 Patricia 424 Barbara 346 Nancy 276 Susan 238 Carol 216 Judith 204 Sharon 186 Betty 186 "
           "Carolyn 187 Sandra 180 Shirley 175 Karen 165 Donna 158 Margaret 152 Kathleen 141 Judy 136 Janet 135 "
           "Joyce 131 Dorothy 126 Janice 119 Diane 115 Brenda 110 Elizabeth 107 Joan 102 Beverly 101 Marilyn 92 "
           "Martha 88 Peggy 87 Catherine 86 Ann 86 Virginia 84 Gloria 79 Bonnie 76 Jean 73 Frances 72 Connie 69 "
           "Cheryl 66 Alice 60")),
    1950: (20600, 19700,
           ("James 844 Michael 839 Robert 832 John 800 David 740 William 580 Richard 412 Thomas 396 Mark 296 Charles 293 "
           "Steven 286 Gary 264 Joseph 260 Donald 252 Ronald 248 Kenneth 231 Paul 230 Larry 228 Daniel 217 Stephen 204 "
           "Dennis 201 Timothy 197 Edward 182 Jeffrey 176 George 175 Gregory 165 Kevin 157 Douglas 149 Terry 142 "
           "Anthony 141 Jerry 135 Bruce 118 Randy 116 Brian 114 Frank 110 Scott 108 Roger 106 Raymond 105 Peter 100 "
           "Patrick 98"),
           ("Mary 627 Linda 565 Patricia 461 Susan 437 Deborah 413 Barbara 359 Debra 339 Karen 327 Nancy 290 Donna 283 "
           "Cynthia 273 Sandra 254 Pamela 253 Sharon 243 Kathleen 225 Carol 225 Diane 209 Brenda 201 Cheryl 185 "
           "Janet 178 Elizabeth 177 Kathy 168 Margaret 161 Janice 150 Carolyn 147 Denise 142 Judy 140 Rebecca 132 "
           "Joyce 125 Teresa 122 Christine 119 Catherine 114 Shirley 111 Judith 110 Betty 104 Beverly 100 Lisa 97 "
           "Laura 96 Theresa 91 Connie 89")),
    1960: (20000, 19100,
           ("Michael 833 David 744 John 658 James 596 Robert 578 Mark 431 William 431 Richard 319 Thomas 310 Jeffrey 279 "
           "Steven 272 Joseph 265 Timothy 253 Kevin 250 Scott 232 Brian 228 Charles 215 Paul 202 Daniel 201 "
           "Christopher 184 Kenneth 167 Anthony 165 Gregory 160 Ronald 138 Donald 132 Gary 127 Stephen 127 Eric 123 "
           "Edward 119 Douglas 113 Todd 106 Patrick 104 George 96 Keith 95 Larry 91 Matthew 89 Terry 86 Andrew 85 "
           "Dennis 81 Randy 78"),
           ("Lisa 496 Mary 478 Susan 379 Karen 352 Kimberly 303 Patricia 263 Linda 258 Donna 246 Michelle 245 Cynthia 244 "
           "Sandra 203 Deborah 199 Tammy 197 Pamela 196 Lori 195 Laura 189 Elizabeth 188 Julie 187 Brenda 178 "
           "Jennifer 176 Barbara 162 Angela 160 Sharon 151 Debra 150 Teresa 147 Nancy 146 Christine 140 Cheryl 138 "
           "Denise 135 Kelly 134 Tina 133 Kathleen 130 Melissa 122 Robin 120 Amy 118 Diane 109 Dawn 103 Carol 101 "
           "Tracy 99 Kathy 95")),
    1970: (17200, 16400,
           ("Michael 707 Christopher 555 Jason 462 David 461 James 442 John 414 Robert 396 Brian 341 William 326 "
           "Matthew 323 Joseph 277 Daniel 275 Kevin 249 Eric 228 Jeffrey 215 Richard 211 Scott 203 Mark 200 Steven 194 "
           "Thomas 190 Timothy 186 Anthony 173 Charles 163 Joshua 153 Jeremy 143 Paul 137 Andrew 134 Gregory 119 "
           "Chad 113 Kenneth 107 Jonathan 106 Stephen 102 Shawn 100 Aaron 97 Adam 96 Patrick 93 Justin 91 Sean 89 "
           "Edward 85 Todd 80"),
           ("Jennifer 581 Michelle 292 Melissa 289 Amy 268 Kimberly 237 Lisa 233 Angela 220 Heather 217 Stephanie 207 "
           "Nicole 199 Jessica 193 Elizabeth 187 Rebecca 151 Kelly 150 Mary 149 Christina 141 Amanda 141 Julie 136 "
           "Sarah 136 Laura 133 Shannon 131 Christine 124 Tammy 118 Tracy 115 Karen 113 Dawn 104 Susan 103 Andrea 96 "
           "Tina 95 Patricia 93 Cynthia 87 Lori 86 Rachel 84 April 82 Maria 80 Wendy 79 Crystal 77 Stacy 76 Erin 75 "
           "Jamie 74")),
    1980: (19000, 18100,
           ("Michael 663 Christopher 555 Matthew 459 Joshua 399 David 380 James 362 Daniel 355 Robert 344 John 331 "
           "Joseph 296 Jason 294 Justin 253 Andrew 238 Ryan 233 William 224 Brian 222 Brandon 201 Jonathan 197 "
           "Nicholas 179 Anthony 175 Eric 167 Adam 162 Kevin 154 Thomas 148 Steven 146 Timothy 138 Richard 129 "
           "Jeremy 125 Jeffrey 122 Kyle 117 Benjamin 114 Aaron 110 Charles 107 Mark 104 Jacob 99 Stephen 95 Patrick 91 "
           "Scott 88 Nathan 84 Paul 78"),
           ("Jessica 469 Jennifer 440 Amanda 369 Ashley 351 Sarah 287 Stephanie 242 Melissa 228 Nicole 221 Elizabeth 207 "
           "Heather 194 Tiffany 166 Michelle 155 Amber 154 Megan 146 Amy 141 Rachel 140 Kimberly 138 Christina 131 "
           "Lauren 125 Crystal 123 Brittany 121 Rebecca 117 Laura 116 Danielle 115 Emily 114 Samantha 113 Angela 108 "
           "Erin 104 Kelly 101 Sara 96 Lisa 93 Katherine 90 Andrea 88 Jamie 85 Mary 84 Erica 83 Courtney 81 "
           "Kristen 78 Shannon 76 April 72")),
    1990: (20200, 19300,
           ("Michael 462 Christopher 360 Matthew 351 Joshua 329 Jacob 298 Nicholas 275 Andrew 273 Daniel 272 Tyler 262 "
           "Joseph 260 Brandon 251 David 250 James 244 Ryan 230 John 225 Zachary 219 Justin 194 William 193 "
           "Anthony 190 Robert 185 Jonathan 177 Austin 166 Alexander 160 Kyle 159 Kevin 148 Thomas 139 Cody 131 "
           "Jordan 127 Eric 124 Benjamin 122 Aaron 119 Christian 117 Samuel 114 Dylan 111 Steven 107 Brian 105 Jose 103 "
           "Timothy 100 Nathan 99 Adam 96"),
           ("Jessica 303 Ashley 301 Emily 237 Sarah 225 Samantha 224 Amanda 190 Brittany 190 Elizabeth 179 Taylor 176 "
           "Megan 160 Hannah 158 Kayla 155 Lauren 153 Stephanie 151 Rachel 149 Jennifer 142 Nicole 137 Alexis 129 "
           "Victoria 128 Amber 123 Alyssa 122 Courtney 116 Danielle 110 Rebecca 106 Jasmine 104 Brianna 103 "
           "Katherine 102 Alexandra 99 Madison 95 Anna 93 Morgan 91 Chelsea 88 Kelsey 83 Abigail 80 Destiny 77 "
           "Haley 76 Olivia 74 Sydney 73 Erin 72 Allison 70")),
    2000: (20700, 19800,
           ("Jacob 273 Michael 250 Joshua 231 Matthew 221 Daniel 203 Christopher 202 Andrew 201 Ethan 200 Joseph 191 "
           "William 187 Anthony 185 David 179 Alexander 178 Nicholas 174 Ryan 172 Tyler 160 James 158 John 152 "
           "Jonathan 142 Noah 139 Brandon 137 Christian 134 Dylan 133 Samuel 132 Benjamin 129 Nathan 128 Zachary 126 "
           "Logan 125 Justin 116 Gabriel 115 Jose 111 Austin 107 Kevin 103 Elijah 101 Caleb 100 Robert 98 Thomas 95 "
           "Jordan 94 Cameron 92 Jack 90"),
           ("Emily 223 Madison 193 Emma 181 Olivia 156 Hannah 155 Abigail 151 Isabella 145 Samantha 131 Elizabeth 130 "
           "Ashley 127 Alexis 125 Sarah 124 Sophia 123 Alyssa 112 Grace 111 Ava 106 Taylor 102 Brianna 100 Lauren 99 "
           "Chloe 96 Natalie 95 Kayla 93 Jessica 91 Anna 89 Victoria 85 Mia 84 Hailey 81 Sydney 78 Jasmine 75 Julia 72 "
           "Morgan 71 Destiny 70 Rachel 68 Ella 66 Kaitlyn 65 Megan 64 Katherine 63 Savannah 62 Jennifer 61 "
           "Alexandra 60")),
}

# the tail beyond each decade's top 40: real names, "Name:era" (o / m / y / *)
FIRST_TAIL_MALE = """
Walter:o Harold:o Roy:o Ralph:o Eugene:o Howard:o Fred:o Earl:o Louis:o Russell:o Bobby:o Billy:o Jimmy:o Johnny:o
Phillip:* Craig:m Alan:* Glenn:o Dale:o Curtis:m Jeffery:m Troy:m Jay:m Darrell:m Ricky:m Rodney:m Tony:m Derrick:m
Marcus:m Shane:m Travis:m Brent:m Bradley:m Chris:m Corey:m Jared:y Derek:m Joel:m Marc:m Victor:* Carlos:* Luis:*
Juan:* Jesus:* Miguel:* Antonio:* Manuel:* Ricardo:* Francisco:* Javier:* Alejandro:y Angel:y Edwin:* Ramon:* Hector:*
Raul:* Roberto:* Fernando:* Sergio:* Mario:* Pedro:* Ruben:* Jorge:* Omar:y Eduardo:* Marco:y Darnell:m Terrence:m
Andre:m Jamal:m Tyrone:m Maurice:m Reginald:m Cedric:m Lamar:m Dustin:m Seth:y Cory:m Brett:m Casey:m Colin:y
Garrett:y Spencer:y Mitchell:m Grant:y Evan:y Luke:y Connor:y Hunter:y Blake:y Chase:y Cole:y Carson:y Mason:y
Hayden:y Gavin:y Ian:y Jake:y Jesse:* Max:y Owen:y Wyatt:y Landon:y Brayden:y Aiden:y Jackson:y Liam:y Lucas:y
Isaac:y Adrian:y Julian:y Ivan:y Oscar:* Leonard:o Ernest:o Norman:o Melvin:o Clarence:o Lloyd:o Herbert:o Vernon:o
Allen:* Wesley:* Vincent:* Philip:* Jimmie:o Leroy:o Duane:o Dean:o Kurt:m Neil:* Ross:* Rick:m Randall:m Barry:o
Gordon:o Nathaniel:y Dominic:y Tristan:y Bryce:y Jeremiah:y Levi:y Ashton:y Preston:y Alex:y Sam:* Dan:* Tom:o
Marvin:o Glen:o Stanley:o Leon:o Francis:o Lee:o Calvin:* Alfred:o Jon:m Micheal:m Darren:m Lance:m Kirk:m Wade:m
Clinton:m Ronnie:m Jerome:m Clifford:o Rodney:m Bryan:m Devin:y Trevor:y Tanner:y Parker:y Brady:y Dalton:y Jared:m
"""
FIRST_TAIL_FEMALE = """
Gwendolyn:o Yolanda:m Marsha:o Tonya:m Latonya:m Tamika:m Keisha:m Ebony:m Monique:m Felicia:m Vanessa:* Veronica:*
Yvonne:o Rosa:* Carmen:* Ana:* Lucia:* Adriana:y Alejandra:y Gabriela:y Daniela:y Valeria:y Ximena:y Esmeralda:y
Leticia:m Norma:o Irma:o Ruth:o Helen:o Evelyn:o Anne:* Lois:o Phyllis:o Marie:o Rose:o Sheila:o Vicki:o Wanda:o
Rita:o Sherry:o Sally:o Kay:o Gail:o Jill:m Holly:m Heidi:m Stacey:m Kristin:m Kristina:m Misty:m Carrie:m Leslie:m
Tara:m Tanya:m Erika:m Natasha:m Katrina:m Monica:m Sabrina:m Brandy:m Candace:m Jacqueline:* Gina:m Renee:m
Valerie:* Bridget:m Meghan:y Caitlin:y Mckenzie:y Kylie:y Jenna:y Paige:y Brooke:y Shelby:y Cassandra:y Bethany:y
Mackenzie:y Mariah:y Gabrielle:y Autumn:y Faith:y Jade:y Kendall:y Riley:y Payton:y Peyton:y Makayla:y Addison:y
Aubrey:y Zoe:y Lily:y Leah:y Audrey:y Claire:y Lillian:y Camila:y Arianna:y Layla:y Avery:y Maya:y Allyson:y
Lindsay:m Lindsey:m Whitney:m Kristy:m Jenny:m Joy:* Dana:m Tamara:m Jodi:m Marcia:o Sylvia:o Jo:o Kristi:m
Sonia:* Miranda:y Caroline:* Katie:y Molly:y Kathryn:* Catherine:* Diana:* Joanne:o Theresa:o Jane:o Ellen:o Sue:o
Debbie:o Tracey:m Kara:m Krista:m Melanie:m Natalie:* Marissa:y Kaitlin:y Katelyn:y Haley:y Sierra:y Jordan:y
Alexa:y Kelsey:y Jacqueline:* Marilyn:o Pauline:o Lorraine:o Edna:o Wilma:o Geraldine:o Darlene:o Charlene:o
"""
# heritage names (people whose surnames say so choose some of these; the rest choose like everyone)
HERITAGE_FIRST: dict[str, tuple[str, str]] = {
    "h": (("Jose Juan Luis Carlos Jesus Miguel Antonio Manuel Francisco Javier Alejandro Ricardo Fernando Jorge Eduardo "
          "Roberto Pedro Raul Sergio Hector Oscar Mario Ruben Angel Diego Adrian Ivan Rafael Arturo Guillermo Enrique"),
          ("Maria Guadalupe Rosa Carmen Ana Juana Lucia Adriana Alejandra Gabriela Daniela Valeria Veronica Leticia "
          "Yesenia Araceli Marisol Esmeralda Elizabeth Jessica Karina Alejandra Patricia Sandra Norma Silvia Claudia")),
    "a": (("Minh Duc Tuan Hung Long Quang Khanh Wei Jian Hao Ming Jun Kevin Eric Andrew Raj Amit Sanjay Rahul Vikram "
          "Arjun Rohan Sung Min Jin Hyun Daniel David Kenji Hiroshi Ken Takeshi Vincent Jason Peter"),
          ("Linh Mai Thuy Hoa Lan Ngoc Trang Mei Li Xin Yan Hui Priya Anjali Sunita Pooja Neha Divya Kavita Ji Eun Min "
          "Soo Yuki Emi Grace Jenny Christine Amy Michelle Jennifer Cindy Vivian Tiffany")),
    "b": (("DeShawn Darius Malik Jalen Trevon Xavier Isaiah Jaden Terrell Darnell Tyrone Jamal Andre Marcus Cedric "
          "Reginald Lamar Demetrius Antoine Dwayne Rashad Jermaine Kareem Jerome Marquis Devonte Keshawn"),
          ("Latoya Shanice Aaliyah Imani Ciara Diamond Tamika Keisha Ebony Monique Tiara Jasmine Precious Shanell "
          "Latasha Tanisha Kiara Destiny Raven Nia Jada Ayanna Shaniqua Lakeisha Yolanda Felicia Tasha")),
}
NICKNAMES: dict[str, tuple[str, ...]] = {
    "Michael": ("Mike",), "Robert": ("Bob", "Rob", "Bobby"), "William": ("Bill", "Will", "Billy"), "James": ("Jim", "Jimmy"),
    "Richard": ("Rick", "Rich"), "Thomas": ("Tom", "Tommy"), "Joseph": ("Joe", "Joey"), "Charles": ("Chuck", "Charlie"),
    "Christopher": ("Chris",), "Daniel": ("Dan", "Danny"), "Matthew": ("Matt",), "Anthony": ("Tony",), "Steven": ("Steve",),
    "Stephen": ("Steve",), "Jeffrey": ("Jeff",), "Timothy": ("Tim",), "Kenneth": ("Ken", "Kenny"), "Ronald": ("Ron",),
    "Donald": ("Don",), "Gregory": ("Greg",), "Nicholas": ("Nick",), "Andrew": ("Andy", "Drew"), "Benjamin": ("Ben",),
    "Jonathan": ("Jon",), "Samuel": ("Sam",), "Alexander": ("Alex",), "Zachary": ("Zach",), "Patrick": ("Pat",),
    "Edward": ("Ed", "Eddie"), "Douglas": ("Doug",), "Gerald": ("Jerry",), "Lawrence": ("Larry",), "Raymond": ("Ray",),
    "Joshua": ("Josh",), "Jacob": ("Jake",), "David": ("Dave",), "Jennifer": ("Jen", "Jenny"), "Elizabeth": ("Liz", "Beth"),
    "Katherine": ("Kate", "Katie"), "Kimberly": ("Kim",), "Patricia": ("Pat", "Patty"), "Deborah": ("Deb", "Debbie"),
    "Debra": ("Deb", "Debbie"), "Susan": ("Sue",), "Margaret": ("Peggy", "Maggie"), "Rebecca": ("Becky",),
    "Christina": ("Tina", "Chris"), "Stephanie": ("Steph",), "Samantha": ("Sam",), "Victoria": ("Tori", "Vicky"),
    "Jessica": ("Jess",), "Cynthia": ("Cindy",), "Pamela": ("Pam",), "Kathleen": ("Kathy",), "Sandra": ("Sandy",),
    "Barbara": ("Barb",), "Alexandra": ("Alex",), "Abigail": ("Abby",), "Madison": ("Maddie",), "Jacqueline": ("Jackie",),
}

# -- places --------------------------------------------------------------------------------------
# ST: (name, population k, IANA zone, sales tax %, hispanic %, asian %, black %, ZIP3 ranges)
STATES: dict[str, tuple[str, int, str, float, float, float, float, str]] = {
    "AL": ("Alabama", 5030, "America/Chicago", 9.2, 5, 1.5, 26, "350-369"),
    "AK": ("Alaska", 733, "America/Anchorage", 1.8, 7, 7, 3, "995-999"),
    "AZ": ("Arizona", 7150, "America/Phoenix", 8.4, 31, 4, 5, "850-865"),
    "AR": ("Arkansas", 3010, "America/Chicago", 9.5, 8, 2, 15, "716-729"),
    "CA": ("California", 39540, "America/Los_Angeles", 8.8, 39, 16, 6, "900-961"),
    "CO": ("Colorado", 5770, "America/Denver", 7.8, 22, 4, 4, "800-816"),
    "CT": ("Connecticut", 3610, "America/New_York", 6.4, 17, 5, 11, "060-069"),
    "DE": ("Delaware", 990, "America/New_York", 0.0, 10, 4, 22, "197-199"),
    "DC": ("District of Columbia", 690, "America/New_York", 6.0, 11, 5, 44, "200-205"),
    "FL": ("Florida", 21540, "America/New_York", 7.0, 26, 3, 15, "320-349"),
    "GA": ("Georgia", 10710, "America/New_York", 7.4, 10, 5, 31, "300-319,398-399"),
    "HI": ("Hawaii", 1455, "Pacific/Honolulu", 4.4, 11, 37, 2, "967-968"),
    "ID": ("Idaho", 1840, "America/Boise", 6.0, 13, 1.5, 1, "832-838"),
    "IL": ("Illinois", 12810, "America/Chicago", 8.8, 18, 6, 14, "600-629"),
    "IN": ("Indiana", 6790, "America/Indiana/Indianapolis", 7.0, 8, 3, 10, "460-479"),
    "IA": ("Iowa", 3190, "America/Chicago", 6.9, 7, 3, 4, "500-528"),
    "KS": ("Kansas", 2940, "America/Chicago", 8.7, 13, 3, 6, "660-679"),
    "KY": ("Kentucky", 4510, "America/New_York", 6.0, 4, 2, 8, "400-427"),
    "LA": ("Louisiana", 4660, "America/Chicago", 9.6, 6, 2, 32, "700-714"),
    "ME": ("Maine", 1360, "America/New_York", 5.5, 2, 1, 2, "039-049"),
    "MD": ("Maryland", 6180, "America/New_York", 6.0, 11, 7, 30, "206-219"),
    "MA": ("Massachusetts", 7030, "America/New_York", 6.3, 13, 7, 8, "010-027"),
    "MI": ("Michigan", 10080, "America/Detroit", 6.0, 6, 3, 14, "480-499"),
    "MN": ("Minnesota", 5710, "America/Chicago", 7.5, 6, 5, 7, "550-567"),
    "MS": ("Mississippi", 2960, "America/Chicago", 7.1, 3, 1, 37, "386-397"),
    "MO": ("Missouri", 6150, "America/Chicago", 8.3, 5, 2, 11, "630-658"),
    "MT": ("Montana", 1080, "America/Denver", 0.0, 4, 1, 1, "590-599"),
    "NE": ("Nebraska", 1960, "America/Chicago", 6.9, 12, 3, 5, "680-693"),
    "NV": ("Nevada", 3100, "America/Los_Angeles", 8.2, 30, 9, 10, "889-898"),
    "NH": ("New Hampshire", 1380, "America/New_York", 0.0, 4, 3, 2, "030-038"),
    "NJ": ("New Jersey", 9290, "America/New_York", 6.6, 21, 10, 13, "070-089"),
    "NM": ("New Mexico", 2120, "America/Denver", 7.8, 49, 2, 2, "870-884"),
    "NY": ("New York", 20200, "America/New_York", 8.5, 19, 9, 15, "100-149"),
    "NC": ("North Carolina", 10440, "America/New_York", 7.0, 10, 3, 21, "270-289"),
    "ND": ("North Dakota", 779, "America/Chicago", 7.0, 4, 2, 3, "580-588"),
    "OH": ("Ohio", 11800, "America/New_York", 7.2, 4, 3, 13, "430-459"),
    "OK": ("Oklahoma", 3960, "America/Chicago", 9.0, 11, 2, 7, "730-749"),
    "OR": ("Oregon", 4240, "America/Los_Angeles", 0.0, 14, 5, 2, "970-979"),
    "PA": ("Pennsylvania", 13000, "America/New_York", 6.3, 8, 4, 11, "150-196"),
    "RI": ("Rhode Island", 1100, "America/New_York", 7.0, 17, 4, 6, "028-029"),
    "SC": ("South Carolina", 5120, "America/New_York", 7.5, 6, 2, 26, "290-299"),
    "SD": ("South Dakota", 887, "America/Chicago", 6.4, 4, 1.5, 2, "570-577"),
    "TN": ("Tennessee", 6910, "America/Chicago", 9.5, 6, 2, 16, "370-385"),
    "TX": ("Texas", 29150, "America/Chicago", 8.2, 40, 5, 12, "750-799,885"),
    "UT": ("Utah", 3270, "America/Denver", 7.2, 15, 3, 1, "840-847"),
    "VT": ("Vermont", 643, "America/New_York", 6.2, 2, 2, 1, "050-059"),
    "VA": ("Virginia", 8630, "America/New_York", 5.8, 10, 7, 19, "220-246"),
    "WA": ("Washington", 7710, "America/Los_Angeles", 9.3, 14, 10, 4, "980-994"),
    "WV": ("West Virginia", 1790, "America/New_York", 6.5, 2, 1, 4, "247-268"),
    "WI": ("Wisconsin", 5890, "America/Chicago", 5.4, 8, 3, 6, "530-549"),
    "WY": ("Wyoming", 577, "America/Denver", 5.4, 10, 1, 1, "820-831"),
}

# "City|ST|ZIP lo-hi|area codes (code:year in service)|population k|kind" (kind: c city, s suburb, t town)
PLACES = """
New York|NY|10001-10282|212:1947 646:1999 917:1992 332:2017|1630|c
Brooklyn|NY|11201-11256|718:1984 347:1999 929:2011 917:1992|2590|c
Bronx|NY|10451-10475|718:1984 347:1999 929:2011|1420|c
Staten Island|NY|10301-10314|718:1984 347:1999|476|c
Flushing|NY|11351-11390|718:1984 347:1999 929:2011|260|c
Jamaica|NY|11430-11439|718:1984 347:1999|220|c
Astoria|NY|11101-11106|718:1984 347:1999 929:2011|160|c
Yonkers|NY|10701-10710|914:1947|200|s
White Plains|NY|10601-10610|914:1947|58|s
Hempstead|NY|11549-11551|516:1951|55|s
Levittown|NY|11756-11756|516:1951|52|s
Huntington|NY|11743-11743|631:1999|40|s
Brentwood|NY|11717-11717|631:1999|62|s
Buffalo|NY|14201-14228|716:1947|278|c
Rochester|NY|14604-14627|585:2001|211|c
Syracuse|NY|13201-13290|315:1947 680:2017|148|c
Albany|NY|12201-12260|518:1947 838:2017|99|c
Ithaca|NY|14850-14853|607:1954|32|t
Binghamton|NY|13901-13905|607:1954|47|t
Los Angeles|CA|90001-90089|213:1947 323:1998 310:1991 424:2006 818:1984 747:2009|3900|c
San Diego|CA|92101-92199|619:1982 858:1999|1390|c
San Jose|CA|95110-95139|408:1959 669:2014|1010|c
San Francisco|CA|94102-94134|415:1947 628:2015|870|c
Fresno|CA|93650-93790|559:1998|540|c
Sacramento|CA|95811-95838|916:1947 279:2018|525|c
Long Beach|CA|90802-90815|562:1997|465|c
Oakland|CA|94601-94621|510:1991 341:2019|440|c
Bakersfield|CA|93301-93314|661:1999|400|c
Anaheim|CA|92801-92825|714:1951 657:2008|350|c
Santa Ana|CA|92701-92707|714:1951 657:2008|310|c
Riverside|CA|92501-92522|951:2004|315|c
Irvine|CA|92602-92620|949:1998|310|s
Stockton|CA|95202-95219|209:1958 350:2022|320|c
Chula Vista|CA|91909-91915|619:1982|275|s
Fremont|CA|94536-94555|510:1991 341:2019|230|s
San Bernardino|CA|92401-92427|909:1992 840:2021|222|c
Modesto|CA|95350-95358|209:1958|218|c
Fontana|CA|92334-92337|909:1992|214|s
Oxnard|CA|93030-93036|805:1957 820:2018|202|c
Glendale|CA|91201-91210|818:1984 747:2009|196|s
Huntington Beach|CA|92646-92649|714:1951 657:2008|198|s
Santa Clarita|CA|91350-91390|661:1999|228|s
Pasadena|CA|91101-91125|626:1997|138|s
Torrance|CA|90501-90510|310:1991 424:2006|143|s
Sunnyvale|CA|94085-94090|408:1959 669:2014|155|s
Santa Rosa|CA|95401-95409|707:1959 369:2024|178|c
Berkeley|CA|94701-94720|510:1991 341:2019|124|s
Pomona|CA|91766-91769|909:1992|151|s
Escondido|CA|92025-92033|760:1997 442:2009|151|s
Chicago|IL|60601-60661|312:1947 773:1996 872:2009|2700|c
Aurora|IL|60502-60507|630:1996 331:2007|180|s
Naperville|IL|60540-60567|630:1996 331:2007|149|s
Joliet|IL|60431-60436|815:1947 779:2007|150|s
Evanston|IL|60201-60209|847:1996 224:2002|74|s
Schaumburg|IL|60173-60196|847:1996 224:2002|78|s
Skokie|IL|60076-60077|847:1996 224:2002|67|s
Oak Park|IL|60301-60304|708:1989|52|s
Rockford|IL|61101-61114|815:1947 779:2007|147|c
Springfield|IL|62701-62794|217:1947 447:2021|114|c
Peoria|IL|61602-61615|309:1957 861:2021|113|c
Champaign|IL|61820-61826|217:1947|88|t
Houston|TX|77002-77099|713:1947 281:1996 832:1999 346:2014|2300|c
San Antonio|TX|78201-78266|210:1992 726:2017|1530|c
Dallas|TX|75201-75398|214:1947 469:1999 972:1996 945:2021|1300|c
Austin|TX|78701-78759|512:1947 737:2013|960|c
Fort Worth|TX|76101-76199|817:1953 682:2000|910|c
El Paso|TX|79901-79938|915:1947|680|c
Arlington|TX|76001-76019|817:1953 682:2000|395|s
Corpus Christi|TX|78401-78418|361:1999|326|c
Plano|TX|75023-75094|972:1996 469:1999 214:1947|285|s
Frisco|TX|75033-75036|972:1996 469:1999 214:1947|200|s
Irving|TX|75038-75063|972:1996 469:1999 214:1947|240|s
Garland|TX|75040-75049|972:1996 469:1999 214:1947|240|s
Lubbock|TX|79401-79424|806:1957|260|c
Laredo|TX|78040-78046|956:1992|260|c
Katy|TX|77449-77494|281:1996 832:1999 346:2014|21|s
Sugar Land|TX|77478-77479|281:1996 832:1999 346:2014|111|s
Pearland|TX|77581-77584|281:1996 832:1999 713:1947|125|s
The Woodlands|TX|77380-77389|281:1996 832:1999 936:1997|115|s
Round Rock|TX|78664-78681|512:1947 737:2013|120|s
McAllen|TX|78501-78505|956:1992|142|c
Brownsville|TX|78520-78526|956:1992|186|c
Amarillo|TX|79101-79124|806:1957|200|c
Waco|TX|76701-76716|254:1997|139|c
Killeen|TX|76540-76549|254:1997|153|c
Tyler|TX|75701-75713|903:1953 430:2003|106|c
Midland|TX|79701-79712|432:2003|132|c
Beaumont|TX|77701-77713|409:1983|115|c
College Station|TX|77840-77845|979:2000|120|t
Denton|TX|76201-76210|940:1997|140|s
Phoenix|AZ|85003-85099|602:1947 480:1999 623:1999|1610|c
Tucson|AZ|85701-85757|520:1995|545|c
Mesa|AZ|85201-85216|480:1999|505|s
Chandler|AZ|85224-85249|480:1999|275|s
Scottsdale|AZ|85250-85266|480:1999|241|s
Glendale|AZ|85301-85318|623:1999|248|s
Gilbert|AZ|85233-85298|480:1999|267|s
Tempe|AZ|85281-85288|480:1999|180|s
Peoria|AZ|85345-85383|623:1999|190|s
Flagstaff|AZ|86001-86011|928:2001|76|t
Yuma|AZ|85364-85369|928:2001|95|t
Philadelphia|PA|19102-19154|215:1947 267:1997 445:2018|1580|c
Pittsburgh|PA|15201-15244|412:1947 878:2001|302|c
Allentown|PA|18101-18109|610:1994 484:1999|125|c
Erie|PA|16501-16515|814:1947 582:2021|95|c
Reading|PA|19601-19612|610:1994 484:1999|95|c
Scranton|PA|18503-18510|570:1998 272:2013|76|c
Harrisburg|PA|17101-17113|717:1947 223:2017|50|c
Lancaster|PA|17601-17608|717:1947 223:2017|58|t
State College|PA|16801-16805|814:1947|42|t
King of Prussia|PA|19406-19406|610:1994 484:1999|22|s
Levittown|PA|19054-19058|215:1947 267:1997|52|s
Jacksonville|FL|32202-32258|904:1965|950|c
Miami|FL|33125-33199|305:1947 786:1998|440|c
Tampa|FL|33602-33647|813:1953 656:2022|385|c
Orlando|FL|32801-32839|407:1954 689:2019|307|c
St. Petersburg|FL|33701-33716|727:1998|258|c
Hialeah|FL|33010-33018|305:1947 786:1998|223|s
Tallahassee|FL|32301-32317|850:1995 448:2021|196|c
Fort Lauderdale|FL|33301-33394|954:1995 754:2001|182|c
Port St. Lucie|FL|34952-34987|772:2002|204|s
Cape Coral|FL|33904-33993|239:2002|194|s
Pembroke Pines|FL|33023-33029|954:1995 754:2001|171|s
Hollywood|FL|33019-33029|954:1995 754:2001|153|s
Gainesville|FL|32601-32653|352:1995|141|c
Miramar|FL|33023-33029|954:1995 754:2001|134|s
Coral Springs|FL|33065-33077|954:1995 754:2001|134|s
Clearwater|FL|33755-33767|727:1998|117|s
Palm Bay|FL|32905-32911|321:1999|119|s
West Palm Beach|FL|33401-33422|561:1996|117|c
Boca Raton|FL|33427-33499|561:1996|97|s
Lakeland|FL|33801-33815|863:1999|112|c
Kissimmee|FL|34741-34747|407:1954 689:2019|79|s
Sarasota|FL|34230-34243|941:1995|57|t
Naples|FL|34101-34120|239:2002|22|t
Pensacola|FL|32501-32526|850:1995|54|t
Ocala|FL|34470-34483|352:1995|63|t
Columbus|OH|43201-43235|614:1947 380:2017|905|c
Cleveland|OH|44101-44199|216:1947|372|c
Cincinnati|OH|45201-45280|513:1947 283:2020|309|c
Toledo|OH|43601-43699|419:1947 567:2002|270|c
Akron|OH|44301-44334|330:1996 234:2000|190|c
Dayton|OH|45401-45490|937:1996 326:2020|137|c
Parma|OH|44129-44134|440:1997 436:2021|81|s
Canton|OH|44701-44799|330:1996 234:2000|70|t
Youngstown|OH|44501-44599|330:1996 234:2000|60|t
Dublin|OH|43016-43017|614:1947 380:2017|49|s
Mentor|OH|44060-44061|440:1997|47|s
Charlotte|NC|28201-28299|704:1947 980:2000|875|c
Raleigh|NC|27601-27699|919:1954 984:2012|470|c
Greensboro|NC|27401-27499|336:1997 743:2023|300|c
Durham|NC|27701-27717|919:1954 984:2012|285|c
Winston-Salem|NC|27101-27199|336:1997|250|c
Fayetteville|NC|28301-28314|910:1993 472:2023|208|c
Cary|NC|27511-27519|919:1954 984:2012|175|s
Wilmington|NC|28401-28412|910:1993|116|c
Asheville|NC|28801-28816|828:1998|94|t
Chapel Hill|NC|27514-27517|919:1954 984:2012|61|t
Concord|NC|28025-28027|704:1947 980:2000|105|s
Indianapolis|IN|46201-46298|317:1947 463:2016|887|c
Fort Wayne|IN|46801-46899|260:2002|263|c
Evansville|IN|47701-47750|812:1947 930:2015|117|c
South Bend|IN|46601-46699|574:2002|103|c
Carmel|IN|46032-46033|317:1947 463:2016|99|s
Fishers|IN|46037-46038|317:1947 463:2016|98|s
Bloomington|IN|47401-47408|812:1947 930:2015|79|t
Lafayette|IN|47901-47909|765:1997|70|t
Seattle|WA|98101-98199|206:1947 564:2017|737|c
Spokane|WA|99201-99260|509:1957|228|c
Tacoma|WA|98401-98499|253:1997|219|c
Vancouver|WA|98660-98687|360:1957 564:2017|190|c
Bellevue|WA|98004-98009|425:1997|151|s
Kent|WA|98030-98042|253:1997|136|s
Everett|WA|98201-98208|425:1997|110|s
Redmond|WA|98052-98053|425:1997|73|s
Renton|WA|98055-98059|425:1997|106|s
Olympia|WA|98501-98516|360:1957|55|t
Yakima|WA|98901-98909|509:1957|96|t
Denver|CO|80201-80299|303:1947 720:1998|715|c
Colorado Springs|CO|80901-80951|719:1988|478|c
Aurora|CO|80010-80019|303:1947 720:1998|386|s
Fort Collins|CO|80521-80528|970:1995|170|c
Lakewood|CO|80214-80235|303:1947 720:1998|155|s
Thornton|CO|80229-80241|303:1947 720:1998|141|s
Boulder|CO|80301-80310|303:1947 720:1998|108|t
Pueblo|CO|81001-81008|719:1988|111|t
Grand Junction|CO|81501-81507|970:1995|65|t
Washington|DC|20001-20099|202:1947 771:2021|690|c
Boston|MA|02108-02137|617:1947 857:2001|675|c
Worcester|MA|01601-01615|508:1988 774:2001|206|c
Springfield|MA|01101-01199|413:1947|155|c
Cambridge|MA|02138-02142|617:1947 857:2001|118|s
Lowell|MA|01850-01854|978:1997 351:2001|115|c
Brockton|MA|02301-02305|508:1988 774:2001|105|s
Quincy|MA|02169-02171|617:1947 857:2001|101|s
Newton|MA|02458-02468|617:1947 857:2001|88|s
Framingham|MA|01701-01705|508:1988 774:2001|72|s
Plymouth|MA|02360-02362|508:1988 774:2001|61|t
Nashville|TN|37201-37250|615:1954 629:2015|690|c
Memphis|TN|38101-38197|901:1947|633|c
Knoxville|TN|37901-37950|865:1999|190|c
Chattanooga|TN|37401-37450|423:1957|181|c
Clarksville|TN|37040-37044|931:1997|166|c
Murfreesboro|TN|37127-37133|615:1954 629:2015|152|s
Franklin|TN|37064-37069|615:1954 629:2015|83|s
Detroit|MI|48201-48288|313:1947 679:2022|639|c
Grand Rapids|MI|49501-49599|616:1947|198|c
Warren|MI|48088-48093|586:2001|139|s
Sterling Heights|MI|48310-48314|586:2001|134|s
Ann Arbor|MI|48103-48109|734:1997|123|c
Lansing|MI|48901-48980|517:1947|112|c
Dearborn|MI|48120-48128|313:1947|109|s
Livonia|MI|48150-48154|734:1997|95|s
Troy|MI|48083-48099|248:1997 947:2002|87|s
Kalamazoo|MI|49001-49009|269:2002|73|t
Flint|MI|48501-48559|810:1993|81|t
Traverse City|MI|49684-49696|231:1999|15|t
Portland|OR|97201-97299|503:1947 971:2000|652|c
Eugene|OR|97401-97440|541:1995 458:2010|177|c
Salem|OR|97301-97317|503:1947 971:2000|175|c
Gresham|OR|97030-97080|503:1947 971:2000|114|s
Hillsboro|OR|97123-97124|503:1947 971:2000|106|s
Beaverton|OR|97005-97008|503:1947 971:2000|97|s
Bend|OR|97701-97709|541:1995 458:2010|99|t
Medford|OR|97501-97504|541:1995 458:2010|85|t
Las Vegas|NV|89101-89199|702:1947 725:2014|641|c
Henderson|NV|89002-89077|702:1947 725:2014|317|s
Reno|NV|89501-89599|775:1998|264|c
North Las Vegas|NV|89030-89087|702:1947 725:2014|262|s
Sparks|NV|89431-89441|775:1998|108|s
Carson City|NV|89701-89706|775:1998|58|t
Oklahoma City|OK|73101-73199|405:1947 572:2021|681|c
Tulsa|OK|74101-74194|918:1953 539:2011|413|c
Norman|OK|73019-73072|405:1947|128|s
Broken Arrow|OK|74011-74014|918:1953 539:2011|113|s
Edmond|OK|73003-73083|405:1947|94|s
Lawton|OK|73501-73507|580:1997|90|t
Louisville|KY|40201-40299|502:1947|633|c
Lexington|KY|40502-40598|859:2000|322|c
Bowling Green|KY|42101-42104|270:1999 364:2014|72|t
Owensboro|KY|42301-42304|270:1999|60|t
Covington|KY|41011-41019|859:2000|41|s
Baltimore|MD|21201-21298|410:1991 443:1997 667:2012|585|c
Columbia|MD|21044-21046|410:1991 443:1997 240:1997|104|s
Germantown|MD|20874-20876|301:1947 240:1997|91|s
Silver Spring|MD|20901-20918|301:1947 240:1997|81|s
Rockville|MD|20847-20859|301:1947 240:1997|68|s
Frederick|MD|21701-21709|301:1947 240:1997|78|c
Bethesda|MD|20814-20817|301:1947 240:1997|63|s
Annapolis|MD|21401-21412|410:1991 443:1997|40|t
Milwaukee|WI|53201-53295|414:1947|577|c
Madison|WI|53701-53794|608:1947|269|c
Green Bay|WI|54301-54344|920:1997 274:2010|107|c
Kenosha|WI|53140-53144|262:1999|99|s
Racine|WI|53401-53408|262:1999|77|s
Appleton|WI|54911-54919|920:1997|75|t
Waukesha|WI|53186-53189|262:1999|71|s
Eau Claire|WI|54701-54703|715:1947 534:2010|69|t
Albuquerque|NM|87101-87199|505:1947|564|c
Las Cruces|NM|88001-88012|575:2007|111|c
Rio Rancho|NM|87124-87174|505:1947|104|s
Santa Fe|NM|87501-87509|505:1947|88|t
Roswell|NM|88201-88203|575:2007|48|t
Atlanta|GA|30301-30399|404:1947 678:1998 470:2010 770:1995|499|c
Augusta|GA|30901-30919|706:1992 762:2006|202|c
Columbus|GA|31901-31999|706:1992 762:2006|206|c
Savannah|GA|31401-31499|912:1954|148|c
Athens|GA|30601-30612|706:1992 762:2006|127|c
Marietta|GA|30060-30068|770:1995 678:1998 470:2010|61|s
Alpharetta|GA|30004-30023|770:1995 678:1998 470:2010|66|s
Roswell|GA|30075-30077|770:1995 678:1998 470:2010|92|s
Sandy Springs|GA|30328-30350|404:1947 770:1995 678:1998|108|s
Decatur|GA|30030-30037|404:1947 678:1998 470:2010|25|s
Lawrenceville|GA|30042-30049|770:1995 678:1998 470:2010|30|s
Macon|GA|31201-31299|478:2000|157|c
Kansas City|MO|64101-64199|816:1947 975:2022|508|c
St. Louis|MO|63101-63199|314:1947 557:2022|301|c
Springfield|MO|65801-65899|417:1950|169|c
Columbia|MO|65201-65218|573:1996 235:2022|126|c
Independence|MO|64050-64058|816:1947|123|s
Lee's Summit|MO|64063-64086|816:1947|101|s
O'Fallon|MO|63366-63368|636:1999|91|s
St. Charles|MO|63301-63304|636:1999|70|s
Wichita|KS|67201-67278|316:1947|397|c
Overland Park|KS|66204-66225|913:1947|197|s
Kansas City|KS|66101-66119|913:1947|156|c
Olathe|KS|66061-66063|913:1947|141|s
Topeka|KS|66601-66699|785:1997|126|c
Lawrence|KS|66044-66049|785:1997|94|t
Omaha|NE|68101-68198|402:1947 531:2011|486|c
Lincoln|NE|68501-68588|402:1947 531:2011|291|c
Bellevue|NE|68005-68005|402:1947|64|s
Grand Island|NE|68801-68803|308:1955|53|t
Minneapolis|MN|55401-55488|612:1947|429|c
St. Paul|MN|55101-55199|651:1998|311|c
Rochester|MN|55901-55906|507:1954 924:2023|121|c
Bloomington|MN|55420-55439|952:2000|89|s
Duluth|MN|55801-55816|218:1947|87|c
Brooklyn Park|MN|55428-55445|763:2000|86|s
Plymouth|MN|55441-55447|763:2000|81|s
Eagan|MN|55121-55123|651:1998|68|s
St. Cloud|MN|56301-56304|320:1996|68|t
New Orleans|LA|70112-70195|504:1947|383|c
Baton Rouge|LA|70801-70898|225:1998|227|c
Shreveport|LA|71101-71171|318:1957|187|c
Lafayette|LA|70501-70598|337:1999|121|c
Metairie|LA|70001-70011|504:1947|143|s
Lake Charles|LA|70601-70616|337:1999|84|t
Monroe|LA|71201-71213|318:1957|47|t
Virginia Beach|VA|23450-23479|757:1996 948:2022|459|c
Norfolk|VA|23501-23551|757:1996|238|c
Chesapeake|VA|23320-23328|757:1996|249|s
Richmond|VA|23218-23298|804:1973 686:2022|226|c
Arlington|VA|22201-22246|703:1947 571:2000|238|s
Alexandria|VA|22301-22315|703:1947 571:2000|159|s
Newport News|VA|23601-23612|757:1996|186|c
Fairfax|VA|22030-22039|703:1947 571:2000|24|s
Reston|VA|20190-20196|703:1947 571:2000|63|s
Roanoke|VA|24001-24050|540:1995 826:2022|100|c
Charlottesville|VA|22901-22911|434:2001|46|t
Lynchburg|VA|24501-24515|434:2001|79|t
Honolulu|HI|96801-96850|808:1957|350|c
Pearl City|HI|96782-96782|808:1957|45|s
Hilo|HI|96720-96721|808:1957|45|t
Kailua|HI|96734-96734|808:1957|40|s
Kahului|HI|96732-96733|808:1957|28|t
Anchorage|AK|99501-99599|907:1957|291|c
Fairbanks|AK|99701-99790|907:1957|32|t
Juneau|AK|99801-99850|907:1957|32|t
Wasilla|AK|99623-99687|907:1957|10|t
Birmingham|AL|35201-35298|205:1947 659:2019|200|c
Montgomery|AL|36101-36125|334:1995|200|c
Huntsville|AL|35801-35899|256:1998 938:2010|215|c
Mobile|AL|36601-36695|251:2001|187|c
Tuscaloosa|AL|35401-35487|205:1947 659:2019|100|c
Hoover|AL|35216-35244|205:1947 659:2019|92|s
Auburn|AL|36830-36832|334:1995|76|t
Dothan|AL|36301-36305|334:1995|71|t
Little Rock|AR|72201-72295|501:1947|202|c
Fayetteville|AR|72701-72704|479:2002|93|c
Fort Smith|AR|72901-72919|479:2002|89|c
Springdale|AR|72762-72766|479:2002|84|s
Jonesboro|AR|72401-72404|870:1997|78|t
Conway|AR|72032-72035|501:1947|64|s
Bentonville|AR|72712-72716|479:2002|54|s
Jackson|MS|39201-39296|601:1947 769:2005|153|c
Gulfport|MS|39501-39507|228:1997|72|c
Southaven|MS|38671-38672|662:1999|55|s
Hattiesburg|MS|39401-39407|601:1947 769:2005|48|t
Biloxi|MS|39530-39535|228:1997|49|t
Tupelo|MS|38801-38804|662:1999|38|t
Salt Lake City|UT|84101-84199|801:1947 385:2009|200|c
West Valley City|UT|84119-84128|801:1947 385:2009|140|s
Provo|UT|84601-84606|801:1947 385:2009|115|c
West Jordan|UT|84081-84088|801:1947 385:2009|116|s
Orem|UT|84057-84059|801:1947 385:2009|98|s
Sandy|UT|84070-84094|801:1947 385:2009|96|s
Ogden|UT|84401-84415|801:1947 385:2009|87|c
St. George|UT|84770-84791|435:1997|95|t
Logan|UT|84321-84341|435:1997|52|t
Boise|ID|83701-83799|208:1947 986:2017|235|c
Meridian|ID|83642-83680|208:1947 986:2017|117|s
Nampa|ID|83651-83687|208:1947 986:2017|100|s
Idaho Falls|ID|83401-83415|208:1947|64|t
Pocatello|ID|83201-83209|208:1947|56|t
Coeur d'Alene|ID|83814-83816|208:1947|54|t
Des Moines|IA|50301-50398|515:1947|214|c
Cedar Rapids|IA|52401-52499|319:1947|137|c
Davenport|IA|52801-52809|563:2001|101|c
Sioux City|IA|51101-51111|712:1947|85|t
Iowa City|IA|52240-52246|319:1947|74|t
West Des Moines|IA|50265-50266|515:1947|68|s
Ames|IA|50010-50014|515:1947|66|t
Hartford|CT|06101-06199|860:1995 959:2009|121|c
Bridgeport|CT|06601-06699|203:1947 475:2009|148|c
New Haven|CT|06501-06540|203:1947 475:2009|135|c
Stamford|CT|06901-06928|203:1947 475:2009|135|c
Waterbury|CT|06701-06726|203:1947 475:2009|114|c
Norwalk|CT|06850-06860|203:1947 475:2009|91|s
Danbury|CT|06810-06817|203:1947 475:2009|87|t
Greenwich|CT|06830-06836|203:1947 475:2009|63|s
West Hartford|CT|06107-06137|860:1995|64|s
Providence|RI|02901-02940|401:1947|190|c
Warwick|RI|02886-02889|401:1947|82|s
Cranston|RI|02905-02921|401:1947|82|s
Pawtucket|RI|02860-02862|401:1947|75|s
Newark|NJ|07101-07199|973:1997 862:2001|311|c
Jersey City|NJ|07302-07311|201:1947 551:2001|292|c
Paterson|NJ|07501-07544|973:1997 862:2001|159|c
Elizabeth|NJ|07201-07208|908:1991|137|c
Edison|NJ|08817-08837|732:1997 848:2001|107|s
Woodbridge|NJ|07095-07095|732:1997 848:2001|103|s
Toms River|NJ|08753-08757|732:1997 848:2001|95|s
Trenton|NJ|08601-08695|609:1957 640:2018|90|c
Cherry Hill|NJ|08002-08034|856:1999|74|s
Hoboken|NJ|07030-07030|201:1947 551:2001|60|s
Princeton|NJ|08540-08544|609:1957 640:2018|31|t
Hackensack|NJ|07601-07608|201:1947 551:2001|46|s
Morristown|NJ|07960-07963|973:1997 862:2001|20|s
Wilmington|DE|19801-19899|302:1947|71|c
Dover|DE|19901-19906|302:1947|39|c
Newark|DE|19702-19726|302:1947|31|t
Middletown|DE|19709-19709|302:1947|23|s
Charleston|SC|29401-29492|843:1998 854:2015|151|c
Columbia|SC|29201-29292|803:1947 839:2015|137|c
North Charleston|SC|29405-29423|843:1998 854:2015|115|s
Mount Pleasant|SC|29464-29466|843:1998 854:2015|90|s
Rock Hill|SC|29730-29733|803:1947 839:2015|75|s
Greenville|SC|29601-29617|864:1995|70|c
Myrtle Beach|SC|29572-29588|843:1998 854:2015|35|t
Spartanburg|SC|29301-29307|864:1995|38|t
Manchester|NH|03101-03111|603:1947|115|c
Nashua|NH|03060-03064|603:1947|91|c
Concord|NH|03301-03305|603:1947|44|c
Dover|NH|03820-03822|603:1947|32|t
Portsmouth|NH|03801-03804|603:1947|22|t
Burlington|VT|05401-05408|802:1947|44|c
South Burlington|VT|05403-05407|802:1947|20|s
Rutland|VT|05701-05702|802:1947|15|t
Montpelier|VT|05601-05609|802:1947|8|t
Portland|ME|04101-04124|207:1947|68|c
Lewiston|ME|04240-04243|207:1947|37|c
Bangor|ME|04401-04402|207:1947|32|c
South Portland|ME|04106-04116|207:1947|26|s
Augusta|ME|04330-04338|207:1947|19|t
Charleston|WV|25301-25396|304:1947 681:2009|47|c
Huntington|WV|25701-25779|304:1947 681:2009|45|c
Morgantown|WV|26501-26508|304:1947 681:2009|30|t
Parkersburg|WV|26101-26106|304:1947 681:2009|29|t
Wheeling|WV|26003-26003|304:1947 681:2009|27|t
Billings|MT|59101-59117|406:1947|117|c
Missoula|MT|59801-59812|406:1947|75|c
Great Falls|MT|59401-59406|406:1947|60|c
Bozeman|MT|59715-59773|406:1947|53|t
Helena|MT|59601-59626|406:1947|32|t
Fargo|ND|58102-58126|701:1947|125|c
Bismarck|ND|58501-58507|701:1947|73|c
Grand Forks|ND|58201-58208|701:1947|59|c
Minot|ND|58701-58707|701:1947|48|t
Sioux Falls|SD|57101-57198|605:1947|192|c
Rapid City|SD|57701-57709|605:1947|74|c
Aberdeen|SD|57401-57402|605:1947|28|t
Brookings|SD|57006-57007|605:1947|23|t
Cheyenne|WY|82001-82010|307:1947|65|c
Casper|WY|82601-82609|307:1947|59|c
Laramie|WY|82070-82073|307:1947|32|t
Gillette|WY|82716-82718|307:1947|33|t
"""

# the most common US street names (Census TIGER / NLC counts), relative frequency
STREET_NAMES = """
Second 100|Third 96|First 92|Fourth 86|Park 84|Fifth 80|Main 78|Sixth 74|Oak 72|Seventh 68|Pine 66|Maple 64|Cedar 62|
Eighth 58|Elm 56|View 52|Washington 51|Ninth 50|Lake 49|Hill 48|Walnut 44|Spring 42|North 41|Ridge 40|Church 40|
Willow 38|Mill 38|Sunset 36|Railroad 34|Jackson 34|Cherry 33|Highland 33|Meadow 32|Forest 32|River 31|Center 30|
Lincoln 30|Jefferson 29|Madison 28|Franklin 28|Adams 27|Wilson 26|Chestnut 26|Dogwood 25|Hickory 25|Birch 24|
Sycamore 24|Magnolia 23|Lakeview 23|Hillcrest 22|Woodland 22|Valley 22|College 21|School 21|Market 20|Union 20|
Broad 20|Front 19|Water 19|Bridge 18|High 18|Spruce 18|Poplar 17|Laurel 17|Holly 16|Aspen 15|Cypress 14|Juniper 13|
Cottonwood 13|Mesquite 8|Palm 10|Peachtree 6|Bayou 4|Country Club 14|Deer Run 9|Fox Hollow 7|Quail Ridge 7|
Indian Hills 6|Pleasant Valley 8|Orchard 14|Prospect 14|Grove 16|Green 15|Mulberry 12|Locust 12|Ash 12|Beech 10|
Evergreen 11|Wildwood 10|Greenwood 11|Brookside 9|Riverside 12|Fairview 13|Glenwood 10|Crestview 10|Rosewood 9|
Sherwood 9|Kingston 8|Canyon 8|Vista 9|Mountain View 9|Sunrise 9|Pinecrest 7|Heritage 8|Liberty 9|Independence 7|
Monroe 14|Grant 12|Harrison 11|Clay 10|Taylor 12|Johnson 11|Smith 9|Williams 8|Davis 8|Miller 8|Martin Luther King Jr 7|
Roosevelt 10|Kennedy 8|Lee 9|Cleveland 7|Virginia 8|Pennsylvania 7|Ohio 7|Michigan 7|Delaware 6|Wall 6|Academy 6|
Airport 8|Old Mill 7|Mill Creek 6|Creekside 7|Cedar Creek 6|Oak Ridge 8|Pine Valley 5|Willow Brook 5|Stonegate 4|
Arbor 6|Meadowbrook 6|Hawthorne 7|Westwood 7|Eastwood 5|Northwood 5|Southview 4|Fairway 6|Clubhouse 4|Church Hill 4
"""
NUMBERED = ("Tenth", "Eleventh", "Twelfth")  # spelled; beyond that digits: 13th ...
# suffix shares (USPS abbreviation, spelled out)
SUFFIXES = (("St", "Street", 25.0), ("Ave", "Avenue", 15.0), ("Rd", "Road", 14.0), ("Dr", "Drive", 18.0),
            ("Ln", "Lane", 9.0), ("Ct", "Court", 6.0), ("Way", "Way", 4.0), ("Blvd", "Boulevard", 2.0),
            ("Pl", "Place", 2.0), ("Cir", "Circle", 2.5), ("Ter", "Terrace", 1.0), ("Trl", "Trail", 1.2),
            ("Pkwy", "Parkway", 0.6), ("Hwy", "Highway", 0.5), ("Loop", "Loop", 0.5), ("Run", "Run", 0.4))

# -- e-mail ----------------------------------------------------------------------------------------
# (domain, share %, age skew: >1 older people use it more, <1 younger)
FREEMAIL = (("gmail.com", 44.0, 0.8), ("yahoo.com", 13.0, 1.5), ("hotmail.com", 7.0, 1.1), ("aol.com", 3.6, 3.0),
            ("outlook.com", 2.6, 0.9), ("icloud.com", 4.0, 0.6), ("msn.com", 0.9, 2.0), ("live.com", 0.9, 0.9),
            ("me.com", 0.5, 1.0), ("mac.com", 0.25, 1.6), ("ymail.com", 0.3, 0.9), ("rocketmail.com", 0.08, 1.0),
            ("protonmail.com", 0.2, 0.5), ("proton.me", 0.1, 0.4), ("mail.com", 0.1, 1.0), ("gmx.com", 0.06, 1.0),
            ("earthlink.net", 0.25, 3.0), ("juno.com", 0.15, 3.0), ("netzero.net", 0.06, 3.0),
            ("aim.com", 0.05, 2.0), ("yahoo.co.uk", 0.03, 1.0), ("googlemail.com", 0.02, 1.0))
# ISP mail domains and the states they serve
ISP_DOMAINS = (
    ("comcast.net", 2.2, "*"), ("att.net", 1.0, "*"), ("verizon.net", 0.7, "NY NJ PA MA MD VA DC DE RI"),
    ("sbcglobal.net", 1.0, "CA TX IL MI OH IN WI MO KS OK AR"), ("bellsouth.net", 0.8, "FL GA AL NC SC TN LA MS KY"),
    ("cox.net", 0.5, "AZ CA NV VA LA OK KS RI NE IA"), ("charter.net", 0.35, "MO WI MI MN CA NC TX"),
    ("optonline.net", 0.35, "NY NJ CT"), ("roadrunner.com", 0.15, "*"), ("twc.com", 0.1, "NY NC OH TX KY"),
    ("nc.rr.com", 0.08, "NC"), ("tampabay.rr.com", 0.06, "FL"), ("austin.rr.com", 0.05, "TX"), ("hawaii.rr.com", 0.05, "HI"),
    ("frontier.com", 0.12, "WV CT NY OH IN"), ("windstream.net", 0.1, "AR KY GA NC"), ("centurylink.net", 0.12, "MN CO AZ WA OR"),
    ("q.com", 0.06, "CO AZ MN UT"), ("embarqmail.com", 0.06, "NC FL NV TN"), ("mchsi.com", 0.04, "IA IL"),
    ("hawaiiantel.net", 0.03, "HI"), ("gci.net", 0.03, "AK"), ("alaska.net", 0.02, "AK"), ("suddenlink.net", 0.04, "TX LA WV"),
    ("ptd.net", 0.02, "PA"), ("tds.net", 0.03, "WI TN NH VT ME"), ("midco.net", 0.03, "SD ND MN"), ("cableone.net", 0.03, "ID MS"),
)
UNIVERSITIES = (
    ("utexas.edu", "TX"), ("tamu.edu", "TX"), ("ucla.edu", "CA"), ("berkeley.edu", "CA"), ("usc.edu", "CA"),
    ("ucsd.edu", "CA"), ("stanford.edu", "CA"), ("umich.edu", "MI"), ("msu.edu", "MI"), ("ufl.edu", "FL"),
    ("ucf.edu", "FL"), ("fsu.edu", "FL"), ("osu.edu", "OH"), ("psu.edu", "PA"), ("upenn.edu", "PA"), ("nyu.edu", "NY"),
    ("columbia.edu", "NY"), ("cornell.edu", "NY"), ("bu.edu", "MA"), ("harvard.edu", "MA"), ("mit.edu", "MA"),
    ("uw.edu", "WA"), ("wisc.edu", "WI"), ("umn.edu", "MN"), ("illinois.edu", "IL"), ("uchicago.edu", "IL"),
    ("purdue.edu", "IN"), ("iu.edu", "IN"), ("gatech.edu", "GA"), ("uga.edu", "GA"), ("asu.edu", "AZ"),
    ("arizona.edu", "AZ"), ("colorado.edu", "CO"), ("utah.edu", "UT"), ("byu.edu", "UT"), ("unc.edu", "NC"),
    ("ncsu.edu", "NC"), ("duke.edu", "NC"), ("virginia.edu", "VA"), ("vt.edu", "VA"), ("umd.edu", "MD"),
    ("jhu.edu", "MD"), ("rutgers.edu", "NJ"), ("uconn.edu", "CT"), ("yale.edu", "CT"), ("ku.edu", "KS"),
    ("mizzou.edu", "MO"), ("wustl.edu", "MO"), ("unl.edu", "NE"), ("uiowa.edu", "IA"), ("lsu.edu", "LA"),
    ("tulane.edu", "LA"), ("ua.edu", "AL"), ("auburn.edu", "AL"), ("utk.edu", "TN"), ("vanderbilt.edu", "TN"),
    ("uky.edu", "KY"), ("ou.edu", "OK"), ("uoregon.edu", "OR"), ("oregonstate.edu", "OR"), ("unlv.edu", "NV"),
    ("unm.edu", "NM"), ("hawaii.edu", "HI"), ("sc.edu", "SC"), ("clemson.edu", "SC"), ("wvu.edu", "WV"),
)
TYPO_DOMAINS = ("gmial.com", "gmail.con", "gamil.com", "gmai.com", "yaho.com", "yahoo.con", "hotmial.com",
                "hotmail.co", "aol.co", "outlok.com", "icloud.con", "comcast.com", "gnail.com", "yahooo.com")
COMPANY_WORDS = ("blue", "summit", "river", "pine", "eagle", "north", "prime", "bright", "cedar", "harbor", "liberty",
                 "pioneer", "keystone", "granite", "lakeside", "metro", "valley", "frontier", "atlas", "anchor",
                 "beacon", "crest", "delta", "evergreen", "falcon", "heritage", "horizon", "iron", "legacy",
                 "midwest", "oak", "pacific", "redwood", "sterling", "tri-state", "united", "western", "allied")
COMPANY_TAILS = ("tech", "group", "law", "health", "mfg", "logistics", "realty", "cpa", "dental", "partners",
                 "consulting", "construction", "insurance", "bank", "hvac", "electric", "media", "systems", "labs", "co")
COMPANY_TLDS = (".com", ".com", ".com", ".com", ".net", ".org", ".us", ".biz")
# e-mail handle words US users pick
HANDLE_WORDS = ("soccer", "hoops", "bball", "baseball", "football", "golf", "fishing", "hunter", "gamer", "music",
                "guitar", "rocker", "angel", "princess", "cowboy", "country", "sunshine", "beach", "surfer", "skater",
                "dragon", "tiger", "wolf", "bear", "eagle", "jazz", "blue", "red", "lucky", "happy", "crazy", "sweet",
                "cool", "babygirl", "mommy", "daddy", "nana", "grandpa", "momof", "mama", "dad", "coach", "nurse",
                "teacher", "farmer", "trucker", "biker", "runner", "yogi", "chef", "doc", "sassy", "ladybug",
                "butterfly", "kitty", "puppy", "husker", "gator", "longhorn", "buckeye", "hokie", "tarheel", "sooner")
